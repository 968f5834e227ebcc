"""Every deployed function runs with shared/topology.py's RUNTIME_ENVIRONMENT
(LOG_EXECUTION_ID), so functions-framework labels its own lines with the call's
execution id as geodeploy labels its lines (tests/core/test_a_calls_lines_carry_its_
trace_and_execution_id.py); the sandbox starts its functions with the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import load_config
from shared.topology import RUNTIME_ENVIRONMENT, functions_of
from tests.infra.test_terraform import CONFIG_NAMES, _functions, _module, config_files  # noqa: F401


@pytest.mark.parametrize("variant", CONFIG_NAMES)
def test_every_function_runs_with_the_runtime_environment(variant: str, config_files: dict[str, Path]) -> None:  # noqa: F811
    functions = _functions(_module(config_files[variant]))
    assert sorted(functions) == sorted(s.name for s in functions_of(load_config(config_files[variant])))
    for name, fn in functions.items():
        env = fn.get("service_config", 0, "environment_variables")
        assert {k: env.get(k) for k in RUNTIME_ENVIRONMENT} == RUNTIME_ENVIRONMENT, name
