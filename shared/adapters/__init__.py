"""Thin adapters to the outside world: Kubernetes, GKE, Pub/Sub, Secret Manager, Cloudflare.

Each offers domain verbs and translates its library's errors into shared.errors once.
Clients are created lazily and kept for the life of the function instance.
"""
