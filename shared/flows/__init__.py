"""Flows: each reads top to bottom as the named steps of one job (deploy a region,
advance waves, reconcile traffic, check drift). Collaborators (clients, publishers,
clocks) are parameters, so tests pass real ones or stand-ins without patching."""
