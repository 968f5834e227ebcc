"""The reference docs name every config key and every message field the code has, and the
README shows the test command CI runs."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from shared.config import Config
from shared.contracts import ControlMessage, DeployRequest, DeployResult, DriftCheckRequest, TrafficHealRequest

REPO = Path(__file__).resolve().parent.parent.parent


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        for arg in typing.get_args(field.annotation) or (field.annotation,):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                keys += _keys(arg, f"{name}.")
    return keys


@pytest.mark.parametrize("key", _keys(Config))
def test_every_config_key_is_in_the_configuration_reference(key):
    doc = (REPO / "docs" / "configuration.md").read_text()
    leaf = key.rsplit(".", 1)[-1]
    # Keys appear as written, as the leaf in a table under their section, or as the
    # head of the dotted keys of their members (`cluster.name`).
    assert f"`{key}`" in doc or f"`{leaf}`" in doc or f"`{leaf}." in doc, f"{key} is not documented"


@pytest.mark.parametrize("model", [ControlMessage, DeployRequest, DeployResult, DriftCheckRequest, TrafficHealRequest])
def test_every_message_field_is_in_the_message_reference(model):
    doc = (REPO / "docs" / "messages.md").read_text()
    missing = [name for name in model.model_fields if f"`{name}`" not in doc and f'"{name}"' not in doc]
    assert not missing, f"{model.__name__}: {missing} not documented"


def test_the_readme_shows_the_command_ci_runs():
    ci = (REPO / ".ci" / "run").read_text()
    command = re.findall(r"^(make \S+)$", ci, re.M)[-1]
    assert command in (REPO / "README.md").read_text()
