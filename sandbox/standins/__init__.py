"""Local stand-ins for the SaaS APIs the sandbox cannot reach.

Each speaks the real REST contract, so the production client libraries talk to it:

- `sandbox.standins.cloudflare`: Cloudflare v4 Load Balancing (monitors, pools, pool
  health, zone load balancers), with fault injection and request counting, held to
  Cloudflare's published OpenAPI schema (`openapi_contract`, the extract in contracts/).
- `sandbox.standins.google_apis`: GKE GetCluster, Secret Manager AccessSecretVersion
  and an OAuth2 token endpoint for google-auth refreshes.
- `sandbox.standins.webhooks`: a webhook receiver (Slack's incoming webhooks, JSON
  webhooks) that records every request and answers each hook as told.

Each runs in-process (`start()` / `stop()`) or as
`python -m sandbox.standins.<name> --host 127.0.0.1 --port N`, printing
`listening on http://HOST:PORT`, and has a JSON control API under `/__standin/`.
"""
