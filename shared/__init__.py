"""geodeploy's shared code: a pure core (config, contracts, rendering, rollout, releases,
planning, traffic and drift decisions: no I/O, no clock, no environment), thin adapters
(shared.adapters) and the flows that compose them (shared.flows). import-linter checks
the layering (pyproject.toml)."""
