"""cloudbuild.yaml: the config is validated by the functions' own loader and the fast
tests run first; only after them Terraform validates, plans to a file and applies that
saved plan, which deploys every function of every region from the one config file."""

from __future__ import annotations

import posixpath
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

RUNTIME = f"{sys.version_info.major}.{sys.version_info.minor}"  # the functions' Python, as the tests run it

REPO = Path(__file__).resolve().parents[2]
CLOUDBUILD = REPO / "cloudbuild.yaml"


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    data = yaml.safe_load(CLOUDBUILD.read_text())
    assert isinstance(data, dict) and isinstance(data.get("steps"), list) and data["steps"]
    return data


def _command(step: dict[str, Any]) -> str:
    return " ".join(str(a) for a in [step.get("entrypoint", ""), *step.get("args", [])])


def _index(build: dict[str, Any], predicate: Any, what: str) -> int:
    matches = [i for i, step in enumerate(build["steps"]) if predicate(step)]
    assert matches, f"no step {what}"
    return matches[0]


def _test_step(build: dict[str, Any]) -> int:
    return _index(build, lambda s: "pytest" in _command(s), "runs the tests")


def _terraform(build: dict[str, Any], command: str) -> int:
    return _index(
        build, lambda s: "terraform" in s["name"] and command in s.get("args", []), f"runs terraform {command}"
    )


def _apply_step(build: dict[str, Any]) -> int:
    return _terraform(build, "apply")


def _validation_step(build: dict[str, Any]) -> int:
    return _index(build, lambda s: "load_config" in _command(s), "validates the config with shared.config.load_config")


def _validation_line(build: dict[str, Any]) -> list[str]:
    """The command that validates the config, as words (the script's one load_config line)."""
    script = _command(build["steps"][_validation_step(build)])
    (line,) = [line for line in script.splitlines() if "load_config" in line]
    return shlex.split(line)


def _depends_on(build: dict[str, Any], index: int) -> set[int]:
    """The steps a step waits for, transitively (no waitFor: every earlier step)."""
    steps = build["steps"]
    ids = {s.get("id"): i for i, s in enumerate(steps) if s.get("id")}
    wait = steps[index].get("waitFor")
    direct = set(range(index)) if wait is None else {ids[w] for w in wait if w != "-"}
    out = set(direct)
    for d in direct:
        out |= _depends_on(build, d)
    return out


def test_every_step_names_an_image(build: dict[str, Any]) -> None:
    for step in build["steps"]:
        assert step.get("name"), step


def test_a_step_runs_the_fast_tests_on_the_functions_python(build: dict[str, Any]) -> None:
    test = _test_step(build)
    step = build["steps"][test]
    assert step["name"].startswith(f"python:{RUNTIME}-")
    command = _command(step)
    assert "python -m pytest" in command
    # The dependencies are installed in this step or in one it waits for (on the same image).
    installs = [
        i
        for i in {test} | _depends_on(build, test)
        if "pip install" in _command(build["steps"][i]) and "requirements-dev.txt" in _command(build["steps"][i])
    ]
    assert installs, "no step installs requirements-dev.txt before the tests"
    assert all(build["steps"][i]["name"] == step["name"] for i in installs)


def test_the_provider_schema_is_built_before_the_tests(build: dict[str, Any]) -> None:
    # tests/infra/test_provider_schema.py fails without it (it never skips).
    script = _command(build["steps"][_test_step(build)]).splitlines()
    built = [i for i, line in enumerate(script) if "scripts/provider_schema.py" in line]
    tested = [i for i, line in enumerate(script) if "pytest" in line]
    assert built and tested and built[0] < tested[0]


def test_the_test_paths_exist(build: dict[str, Any]) -> None:
    command = _command(build["steps"][_test_step(build)])
    line = next(line for line in command.splitlines() if "pytest" in line)
    words = shlex.split(line)
    paths = [w for w in words[words.index("pytest") + 1 :] if not w.startswith("-")]
    assert "tests/infra" in paths
    for path in paths:
        assert (REPO / path).exists(), f"cloudbuild.yaml tests {path}, which does not exist"


def _option(args: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    assert len(values) <= 1, f"{name} given twice: {args}"
    return values[0] if values else None


def test_terraform_plans_the_config_after_the_tests(build: dict[str, Any]) -> None:
    test, plan = _test_step(build), _terraform(build, "plan")
    assert test in _depends_on(build, plan), "terraform plan must wait for the tests"
    step = build["steps"][plan]
    assert step["name"].startswith("hashicorp/terraform")
    args = step["args"]
    assert "-chdir=infra" in args
    assert "-var=config_path=../${_CONFIG}" in args
    assert _option(args, "-out") == "tfplan"


def test_every_apply_applies_the_saved_plan(build: dict[str, Any]) -> None:
    plan = _terraform(build, "plan")
    applies = [i for i, s in enumerate(build["steps"]) if "terraform" in s["name"] and "apply" in s.get("args", [])]
    assert applies
    for apply in applies:
        args = build["steps"][apply]["args"]
        assert plan in _depends_on(build, apply), "the apply must wait for the plan it applies"
        assert args[-1] == _option(build["steps"][plan]["args"], "-out"), f"not a saved plan: {args}"
        assert _option(args, "-chdir") == _option(build["steps"][plan]["args"], "-chdir")
        # A bare apply plans again (and, with -auto-approve, applies what nobody saw).
        assert not [a for a in args if a.startswith(("-var", "-auto-approve", "-target", "-replace", "-destroy"))]


def test_terraform_validates_before_it_plans(build: dict[str, Any]) -> None:
    init, validate, plan = (_terraform(build, c) for c in ("init", "validate", "plan"))
    assert init in _depends_on(build, validate), "validate needs the providers init installs"
    assert validate in _depends_on(build, plan)
    assert "-chdir=infra" in build["steps"][validate]["args"]


def test_the_config_is_validated_before_any_terraform_step(build: dict[str, Any]) -> None:
    validation = _validation_step(build)
    assert build["steps"][validation]["name"].startswith(f"python:{RUNTIME}-")
    terraform = [i for i, s in enumerate(build["steps"]) if "terraform" in s["name"]]
    assert terraform
    for i in terraform:
        assert validation in _depends_on(build, i), f"step {build['steps'][i].get('id')} runs before the validation"


def test_the_validation_checks_the_file_the_plan_deploys(build: dict[str, Any]) -> None:
    words = _validation_line(build)
    validated = [w for w in words if "${_CONFIG}" in w]
    assert len(validated) == 1, words
    plan_args = build["steps"][_terraform(build, "plan")]["args"]
    (config_path,) = [a.removeprefix("-var=config_path=") for a in plan_args if a.startswith("-var=config_path=")]
    chdir = _option(plan_args, "-chdir") or "."
    # Steps run in the repository root; the plan reads its path from infra/ (-chdir).
    assert posixpath.normpath(posixpath.join(chdir, config_path)) == posixpath.normpath(validated[0])


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        (None, True),
        (lambda text: text.replace("regions:", "regoins:"), False),  # a misspelt key
        (lambda text: text.replace("project: ", "project: Not A Project "), False),
        (lambda text: text.replace("deploy_untagged: false", "deploy_untagged: sometimes"), False),
    ],
    ids=["example", "misspelt-key", "bad-project", "not-a-boolean"],
)
def test_the_validation_command_rejects_a_config_the_functions_reject(
    build: dict[str, Any], tmp_path: Path, change: Any, valid: bool
) -> None:
    """The step's own command line, run here with this interpreter on a config file."""
    text = (REPO / "config" / "example.yaml").read_text()
    config = tmp_path / "geodeploy.yaml"
    config.write_text(text if change is None else change(text))
    words = _validation_line(build)
    assert words[0].endswith("/python") and words[1] == "-c", words
    command = [sys.executable, *[w.replace("${_CONFIG}", str(config)) for w in words[1:]]]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode == 0) == valid, f"exit {done.returncode}:\n{done.stderr[-2000:]}"
    if not valid:
        assert str(config) in done.stderr, "the error names the file"


def test_terraform_is_initialised_with_remote_state_before_apply(build: dict[str, Any]) -> None:
    init, apply = _terraform(build, "init"), _apply_step(build)
    assert init in _depends_on(build, apply)
    args = build["steps"][init]["args"]
    assert "-chdir=infra" in args
    assert any(a.startswith("-backend-config=bucket=") for a in args), "state must outlive the build"


def test_config_substitution_defaults_to_geodeploy_yaml(build: dict[str, Any]) -> None:
    assert build["substitutions"]["_CONFIG"] == "geodeploy.yaml"
    used = "\n".join(_command(s) for s in build["steps"])
    for name in build["substitutions"]:
        assert "${" + name + "}" in used, f"substitution {name} is never used"
