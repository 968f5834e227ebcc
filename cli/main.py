"""Argument parsing and dispatch. Only the standard library is imported here, so that
`--help` and usage errors answer at once; a command's module (and the cloud libraries it
needs) is imported when that command runs."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cli.exit_codes import ErrorKind, ExitCode
from cli.output import Output, OutputFormat  # the standard library only, as this module

__all__ = ["COMMANDS", "build_parser", "main"]

_OVERVIEW = """\
Deliver an app to its GKE regions and steer users through Cloudflare, by hand.

Deploys and rollbacks are published as control messages and carried out by the
deployed functions, exactly as an image push would be; --wait follows them live.
"""

_EXIT_CODES = """\
exit codes: 0 success · 1 the operation failed, or found something (diff: changes;
drift --run: drift) · 2 usage or configuration error · 3 could not check (a cluster
or API did not answer) · 130 interrupted. With -o json, stdout is one JSON document,
errors included (docs/cli.md).

environment: GEODEPLOY_CONFIG (default --config), GEODEPLOY_SANDBOX (default --sandbox);
without a sandbox the CLI uses Application Default Credentials and api.cloudflare.com.
"""


class BadUsage(Exception):
    """What argparse refused; main reports it as text or JSON, with exit code 2."""


class Parser(argparse.ArgumentParser):
    """Usage errors are one line (and exit code 2), like every other error of the CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadUsage(f"{message} (see {self.prog} --help)")


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # cli.commands.<module>.run(args) runs it
    summary: str
    examples: str
    arguments: Callable[[argparse.ArgumentParser], None]


def _regions(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--region", dest="regions", action="append", metavar="R", help=f"{what} (repeatable; default: every region)"
    )


def _json_alias(p: argparse.ArgumentParser) -> None:
    # The option status and history had before --output: kept for the scripts that use it.
    p.add_argument(
        "--json", dest="output", action="store_const", const="json", default=argparse.SUPPRESS, help="= --output json"
    )


def _status_args(p: argparse.ArgumentParser) -> None:
    _regions(p, "only this region")
    _json_alias(p)


_IMAGE_HELP = "sha256:<hex> (in the app's repository) or <repository>@sha256:<hex>"


def _render_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", required=True, metavar="R", help="the region to render for")
    p.add_argument("--image", required=True, metavar="IMAGE", help=_IMAGE_HELP)


def _deploy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, metavar="IMAGE", help=_IMAGE_HELP)
    _regions(p, "deploy only to this region, without waves")
    _wait_args(p, "every targeted region (wave by wave) has an outcome")


def _rollback_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--to", default="previous", metavar="TARGET", help="'previous' (default), sha256:<hex> or repo@sha256:<hex>"
    )
    _regions(p, "roll back only this region")
    _wait_args(p, "every targeted region has an outcome")


def _wait_args(p: argparse.ArgumentParser, until: str) -> None:
    p.add_argument("--wait", action="store_true", help=f"follow the regions live until {until}")
    p.add_argument(
        "--timeout", type=float, default=900, metavar="S", help="give up waiting after S seconds (default: 900)"
    )


def _rbac_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", required=True, metavar="R", help="the region whose cluster it is for")


def _drift_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", action="store_true", help="check here and now instead of publishing a drift request")
    p.add_argument("--heal", action="store_true", help="put drifted objects back as released")
    _regions(p, "only this region")


def _kustomize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kustomize",
        metavar="PATH",
        help="the kustomize binary (default: $GEODEPLOY_KUSTOMIZE, else kustomize on PATH)",
    )


def _history_args(p: argparse.ArgumentParser) -> None:
    _regions(p, "only this region")
    p.add_argument("--limit", type=int, default=10, metavar="N", help="at most N releases per region (default: 10)")
    _json_alias(p)


def _import_args(p: argparse.ArgumentParser) -> None:
    # --app (a global option) is required here: it names the new app.
    p.add_argument("--template", required=True, metavar="PATH", help="the multi-document template to import")
    p.add_argument(
        "--repository", required=True, metavar="REPO", help="the app's Artifact Registry repository (no tag, no digest)"
    )
    p.add_argument(
        "--namespace", metavar="NS", help="the app's namespace (default: the one the template's objects name)"
    )
    p.add_argument(
        "--out", default=".", metavar="DIR", help="write DIR/<app>/k8s.yaml, beside DIR's geodeploy.yaml (default: .)"
    )
    p.add_argument("--force", action="store_true", help="overwrite DIR/<app>/k8s.yaml if it exists")


COMMANDS = [
    Command(
        "status",
        "inspect",
        "Show what runs in each region and how Cloudflare steers traffic to it.",
        "geodeploy status\n  geodeploy --app shop status -o json",
        _status_args,
    ),
    Command(
        "render",
        "manifests",
        "Print the Kubernetes objects a release would apply (its manifest hash on stderr).",
        "geodeploy render --region europe-west1 --image sha256:3f2a...\n"
        "  geodeploy render --region us-west1 --image europe-docker.pkg.dev/p/apps/shop@sha256:3f2a...",
        _render_args,
    ),
    Command(
        "diff",
        "manifests",
        "Preview a release against the live cluster: what would be created or changed.",
        "geodeploy diff --region europe-west1 --image sha256:3f2a...\n"
        "  geodeploy diff -o json --region europe-west1 --image sha256:3f2a...   # exit 1: something would change",
        _render_args,
    ),
    Command(
        "deploy",
        "release",
        "Deploy an image: publish a deploy control message (regions follow the waves).",
        "geodeploy deploy --image sha256:3f2a...\n"
        "  geodeploy deploy --image sha256:3f2a... --region us-west1 --wait\n"
        "  geodeploy deploy --image sha256:3f2a... --wait --timeout 600",
        _deploy_args,
    ),
    Command(
        "rollback",
        "release",
        "Roll back: publish a rollback control message (every region at once).",
        "geodeploy rollback --wait\n  geodeploy rollback --to sha256:3f2a... --region asia-east1",
        _rollback_args,
    ),
    Command(
        "drift",
        "drift",
        "Check the clusters and Cloudflare against the releases (publish a request, or --run here).",
        "geodeploy drift\n  geodeploy drift --run\n  geodeploy drift --run --heal --region us-west1",
        _drift_args,
    ),
    Command(
        "rbac",
        "rbac",
        "Print the Kubernetes RBAC the functions need in a region's cluster, for its admin to apply.",
        "geodeploy rbac --region europe-west1 | kubectl apply --server-side -f -",
        _rbac_args,
    ),
    Command(
        "history",
        "inspect",
        "List each region's releases, newest first, from its release record.",
        "geodeploy history\n  geodeploy history --region europe-west1 --limit 3",
        _history_args,
    ),
    Command(
        "kustomize",
        "kustomize",
        "Render the config's kustomize sources, one file per region's kustomization, for the functions to load.",
        "geodeploy kustomize\n  geodeploy kustomize --kustomize ~/.cache/geodeploy/kustomize-v5.7.1/kustomize",
        _kustomize_args,
    ),
    Command(
        "import",
        "import_template",
        "Adopt a template, no config needed: write it upgraded to DIR/<app>/k8s.yaml, print its apps: entry.",
        "geodeploy import --app my-app --template k8s.yaml --repository europe-docker.pkg.dev/p/app/my-app\n"
        "  geodeploy import --app my-app --template old/k8s.yaml --repository REPO --out deploy --force",
        _import_args,
    ),
]


def _global_options(top_level: bool) -> Parser:
    """Global options work before or after the command: the command's copies default to
    SUPPRESS so that, when absent there, they leave the top-level value alone."""
    options = Parser(add_help=False)
    default: dict[str, Any] = {} if top_level else {"default": argparse.SUPPRESS}
    options.add_argument(
        "--config",
        metavar="PATH",
        help="the geodeploy config (default: $GEODEPLOY_CONFIG, else ./geodeploy.yaml)",
        **default,
    )
    options.add_argument(
        "--sandbox",
        metavar="DIR",
        help="talk to the local sandbox recorded in DIR/sandbox.json (default: $GEODEPLOY_SANDBOX)",
        **default,
    )
    options.add_argument("--app", metavar="NAME", help="the app (default: the config's only app)", **default)
    options.add_argument(
        "-o",
        "--output",
        choices=[str(f) for f in OutputFormat],
        help="text for people (default), or json: one JSON document on stdout, progress on stderr",
        **({"default": str(OutputFormat.TEXT)} if top_level else default),
    )
    options.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print geodeploy's JSON log lines on stderr",
        **({"default": False} if top_level else default),
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog="geodeploy",
        description=_OVERVIEW,
        epilog=_EXIT_CODES,
        formatter_class=formatter,
        parents=[_global_options(True)],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(
            command.name,
            help=command.summary,
            description=command.summary,
            epilog=f"examples:\n  {command.examples}\n\n{_EXIT_CODES}",
            formatter_class=formatter,
            parents=[_global_options(False)],
        )
        command.arguments(sub)
        sub.set_defaults(module=command.module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except BadUsage as e:
        return _bad_usage(argv, str(e))
    from cli.errors import run_guarded  # after parsing: --help stays import-free

    out = Output(args.command, OutputFormat(args.output))
    module = importlib.import_module(f"cli.commands.{args.module}")
    return int(run_guarded(lambda: module.run(args, out), out, verbose=args.verbose))


def _bad_usage(argv: list[str], message: str) -> int:
    """argparse gave up, so what was asked is read from argv itself: the command, and
    whether the error must be a JSON document."""
    names = {c.name for c in COMMANDS}
    command = next((a for a in argv if a in names), None)
    as_json = _asks_for_json(argv)
    out = Output(command, OutputFormat.JSON if as_json else OutputFormat.TEXT)
    return int(out.finish(ExitCode.USAGE, (ErrorKind.USAGE, message)))


def _asks_for_json(argv: list[str]) -> bool:
    last = None
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and i + 1 < len(argv):
            last = argv[i + 1]
        elif arg.startswith(("--output=", "-o=")):
            last = arg.split("=", 1)[1]
        elif arg.startswith("-o") and not arg.startswith("-o="):
            last = arg[2:]
        elif arg == "--json":
            last = "json"
    return last == "json"


if __name__ == "__main__":
    raise SystemExit(main())
