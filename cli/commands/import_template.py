"""`import`: adopt a seed-style template. Loads it exactly as the functions load an app's
template (shared.manifest_sources.read_source, so the same upgrades and the same refusals),
writes the upgraded documents to DIR/<app>/k8s.yaml and prints the `apps:` entry that
names them. Needs no geodeploy config: a team adopting geodeploy has none yet."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UsageError
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.views import note, say

if TYPE_CHECKING:
    from shared.config import DirectoryFiles
    from shared.manifest_sources import ManifestSource

__all__ = ["run"]

OUTPUT_NAME = "k8s.yaml"


def run(args: argparse.Namespace, out: Output) -> int:
    if not args.app:  # a global option elsewhere (the config's only app); here it names a new one
        raise UsageError("import needs --app NAME: the app's name in geodeploy.yaml")
    files, template = _template_files(args.template)
    namespace = args.namespace or _namespace_named(files, template)
    source = _load(files, template, namespace)  # first: its refusals say what is wrong with the file
    _check_entry(args.app, args.repository, namespace)
    directory = Path(args.out)
    target = directory / args.app / OUTPUT_NAME
    _write(target, _upgraded_yaml(source, args.template), force=args.force)
    for change in source.notes:  # what loading upgraded or dropped, as render reports it
        note(change)
    entry = _entry(args.app, args.repository, namespace)
    out.result(
        {
            "app": args.app,
            "template": args.template,
            "written": str(target),
            "objects": len(source.documents),
            "notes": list(source.notes),
            "hints": _deadline_hints(source),
            "entry": entry,
        }
    )
    if not out.json:
        say(_entry_text(entry, source, directory))
    return ExitCode.OK


def _template_files(template: str) -> tuple[DirectoryFiles, str]:
    """The template as read_source reads an app's: a path under a directory. A relative
    path inside the working directory stays as typed, so every message names it so;
    anything else is read from its own directory."""
    from shared.config import DirectoryFiles

    here = Path.cwd().resolve()
    path = Path(template)
    if not path.is_absolute() and ".." not in path.parts and (here / path).resolve().is_relative_to(here):
        return DirectoryFiles(here), path.as_posix()
    resolved = path.resolve()
    return DirectoryFiles(resolved.parent), resolved.name


def _namespace_named(files: DirectoryFiles, template: str) -> str:
    """The one namespace the template's objects name (a Namespace document's name, or
    their metadata.namespace); an object that names none would be placed in it."""
    import yaml

    from shared.manifest_sources import Placeholder
    from shared.yaml_loading import load_manifest_documents

    try:
        documents = load_manifest_documents(_read(files, template))
    except yaml.YAMLError:
        # read_source reports it in its own words; the namespace is never reached.
        return str(Placeholder.NAMESPACE)
    named = sorted({ns for body in documents if (ns := _namespace_of(body)) not in (None, Placeholder.NAMESPACE)})
    if len(named) > 1:
        raise UsageError(
            f"{template}: its objects name several namespaces ({', '.join(named)}); an app lives in one: "
            "move them into one namespace, or import them as separate apps"
        )
    if not named:
        raise UsageError(f"{template}: no Namespace document and no metadata.namespace: give --namespace NAME")
    return named[0]


def _namespace_of(body: Any) -> str | None:
    meta = body.get("metadata") if isinstance(body, dict) else None
    if not isinstance(meta, dict):
        return None  # read_source names what is wrong with such a document
    value = meta.get("name") if body.get("kind") == "Namespace" else meta.get("namespace")
    return value if isinstance(value, str) else None


def _read(files: DirectoryFiles, path: str) -> str:
    try:
        return files.read_text(path)
    except ValueError as e:  # names the path and why it could not be read
        raise UsageError(str(e)) from None


def _check_entry(name: str, repository: str, namespace: str) -> None:
    """The entry's own keys, checked by the config's model before anything is written,
    so what is printed is what geodeploy.yaml will accept."""
    from pydantic import ValidationError

    from shared.config import App

    try:
        App.model_validate({"name": name, "repository": repository, "namespace": namespace})
    except ValidationError as e:
        options = {"name": "--app", "repository": "--repository", "namespace": "namespace"}
        problems = [
            f"{options.get(str(err['loc'][0]), err['loc'][0])} {err['input']!r}: "
            + str(err["msg"]).removeprefix("Value error, ")
            for err in e.errors()
        ]
        raise UsageError("; ".join(problems)) from None


def _load(files: DirectoryFiles, template: str, namespace: str) -> ManifestSource:
    from shared.manifest_sources import ManifestSource, read_source

    try:
        return read_source(ManifestSource(template=template), namespace, files)
    except ValueError as e:  # names the file, the document and the field
        raise UsageError(" ".join(str(e).split())) from None  # one line (a YAML error has several)


def _upgraded_yaml(source: ManifestSource, origin: str) -> str:
    import yaml

    # sort_keys=False: the documents keep the order their author wrote (apiVersion, kind,
    # metadata, spec), so the file still reads, and diffs, like the template it replaces;
    # `render` sorts its output, but that is geodeploy's rendering, not the team's file.
    body = yaml.safe_dump_all(
        [document.body for document in source.documents],
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )
    header = (
        f"# Imported by `geodeploy import` from {origin}.\n"
        "# Old API versions are upgraded (its notes say how); the template's comments are not kept.\n"
        "# Placeholders such as __IMAGE__ are filled in per region at each release.\n"
    )
    return header + body


def _write(target: Path, text: str, *, force: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # "x" refuses an existing file in the same call that creates it: nothing can slip in between.
        with target.open("w" if force else "x") as out:
            out.write(text)
    except FileExistsError:
        raise UsageError(f"{target} already exists: pass --force to overwrite it") from None


def _entry(app: str, repository: str, namespace: str) -> dict[str, Any]:
    """The app's entry for geodeploy.yaml's `apps:` list."""
    return {
        "name": app,
        "repository": repository,
        "namespace": namespace,
        "source": {"template": f"{app}/{OUTPUT_NAME}"},
    }


def _entry_text(entry: dict[str, Any], source: ManifestSource, out: Path) -> str:
    import yaml

    app = entry["name"]
    comments = [
        f"Wrote {out / app / OUTPUT_NAME} ({len(source.documents)} objects). Paste this entry into the",
        f"geodeploy.yaml in {out.resolve()} (a template's path is relative to the config's directory); then",
        "  geodeploy render --region R --image sha256:…   prints what a release would apply",
        "  geodeploy diff --region R --image sha256:…     shows what it would change in the live cluster",
        *_deadline_hints(source),
    ]
    pasted = yaml.safe_dump({"apps": [entry]}, sort_keys=False)  # safe_dump quotes whatever needs it
    return "\n".join(f"# {line}" for line in comments) + "\n" + pasted.rstrip("\n")


def _deadline_hints(source: ManifestSource) -> list[str]:
    """A Deployment's own progress deadline must be the config's rollout deadline (the
    config refuses another): say so now rather than at the first load."""
    hints = []
    for document in (d for d in source.documents if d.kind == "Deployment"):
        spec = document.body.get("spec")
        deadline = spec.get("progressDeadlineSeconds") if isinstance(spec, dict) else None
        if deadline is not None:
            hints.append(
                f"{document.describe()} sets spec.progressDeadlineSeconds {deadline}: "
                f"set rollout.progress_deadline_seconds: {deadline} too"
            )
    return hints
