"""cloudbuild.yaml: the fast tests run first, and only after them Terraform applies the
one config file, which deploys every function of every region."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

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


def _apply_step(build: dict[str, Any]) -> int:
    return _index(build, lambda s: "terraform" in s["name"] and "apply" in s.get("args", []), "runs terraform apply")


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


def test_a_step_runs_the_fast_tests_on_python_311(build: dict[str, Any]) -> None:
    step = build["steps"][_test_step(build)]
    assert step["name"].startswith("python:3.11")
    command = _command(step)
    assert "pip install" in command and "requirements-dev.txt" in command
    assert "python -m pytest" in command


def test_the_test_paths_exist(build: dict[str, Any]) -> None:
    command = _command(build["steps"][_test_step(build)])
    line = next(line for line in command.splitlines() if "pytest" in line)
    words = shlex.split(line)
    paths = [w for w in words[words.index("pytest") + 1 :] if not w.startswith("-")]
    assert "tests/infra" in paths
    for path in paths:
        assert (REPO / path).exists(), f"cloudbuild.yaml tests {path}, which does not exist"


def test_terraform_applies_the_config_after_the_tests(build: dict[str, Any]) -> None:
    test, apply = _test_step(build), _apply_step(build)
    assert test in _depends_on(build, apply), "terraform apply must wait for the tests"
    step = build["steps"][apply]
    assert step["name"].startswith("hashicorp/terraform")
    args = step["args"]
    assert "-chdir=infra" in args
    assert "-auto-approve" in args
    assert "-var=config_path=../${_CONFIG}" in args


def test_terraform_is_initialised_with_remote_state_before_apply(build: dict[str, Any]) -> None:
    init = _index(build, lambda s: "terraform" in s["name"] and "init" in s.get("args", []), "runs terraform init")
    apply = _apply_step(build)
    assert init in _depends_on(build, apply)
    args = build["steps"][init]["args"]
    assert "-chdir=infra" in args
    assert any(a.startswith("-backend-config=bucket=") for a in args), "state must outlive the build"


def test_config_substitution_defaults_to_geodeploy_yaml(build: dict[str, Any]) -> None:
    assert build["substitutions"]["_CONFIG"] == "geodeploy.yaml"
    used = "\n".join(_command(s) for s in build["steps"])
    for name in build["substitutions"]:
        assert "${" + name + "}" in used, f"substitution {name} is never used"
