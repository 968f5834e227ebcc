"""`rbac`: the Kubernetes RBAC geodeploy's functions need in one region's cluster, as
YAML for the cluster's admin to apply (`geodeploy rbac --region R | kubectl apply --server-side -f -`).
Rendered from the config alone: no cluster or API is contacted."""

from __future__ import annotations

import argparse

from cli.context import config_path
from cli.errors import UsageError
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.views import note, say

__all__ = ["run"]


def run(args: argparse.Namespace, out: Output) -> int:
    import yaml

    from shared.config import load_config
    from shared.rbac import render_rbac

    config = load_config(config_path(args.config))  # every app's RBAC: no --app choice
    try:
        region = config.region(args.region)
    except KeyError:
        known = ", ".join(r.name for r in config.regions)
        raise UsageError(f"no region named {args.region!r} (regions: {known})") from None
    objects = render_rbac(config, region)
    out.result({"region": region.name, "cluster": region.cluster.name, "objects": objects})
    if out.json:
        return ExitCode.OK
    say(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False).rstrip("\n"))
    note(f"{len(objects)} objects for the cluster of {region.name}; apply them as the cluster's admin")
    return ExitCode.OK
