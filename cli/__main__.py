"""`python -m cli ...`: the same as the `geodeploy` console script."""

from cli.main import main

raise SystemExit(main())
