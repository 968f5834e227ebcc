"""`geodeploy`: the operator's command line for geodeploy.

It reads the same config as the functions, talks to the same systems (GKE, Pub/Sub,
Secret Manager, Cloudflare) and never bypasses the event flow for writes: deploys and
rollbacks are control messages, drift checks are drift requests. `cli.main` parses the
arguments; each command lives in `cli.commands` and is imported only when it runs.
"""
