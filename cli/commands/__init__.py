"""The commands, one module per theme; each module's `run(args)` returns the exit code."""
