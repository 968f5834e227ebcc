"""A kustomize source: the config loads the rendering `geodeploy kustomize` wrote beside
each region's kustomization (never running kustomize), checks it as a template's
documents are checked, and a release in a region renders that region's objects."""

from __future__ import annotations

import pytest

from shared.config import ConfigError
from shared.manifest_sources import KUSTOMIZE_OUTPUT
from shared.rendering import render_release
from tests.core.builders import build_sourced_config, image


def rendering(region: str, replicas: int) -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings-{region}}}
data: {{REGION: {region}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: __IMAGE__}}]}}
"""


REGIONS = {"europe-west1": 3, "us-west1": 2, "asia-east1": 2}
SOURCE = {"kustomize": "deploy/overlays/__REGION__"}


def files(regions: dict[str, int] = REGIONS) -> dict[str, str]:
    return {f"deploy/overlays/{r}/{KUSTOMIZE_OUTPUT}": rendering(r, n) for r, n in regions.items()}


def test_each_region_renders_its_own_overlays_objects():
    config = build_sourced_config(SOURCE, files())
    app = config.apps[0]
    for region, replicas in REGIONS.items():
        rendered = render_release(config, app, config.region(region), image("v1"))
        assert rendered.find("ConfigMap")["metadata"]["name"] == f"settings-{region}"
        deployment = rendered.find("Deployment")
        assert deployment["spec"]["replicas"] == replicas
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image("v1").reference


def test_one_kustomization_for_every_region_is_rendered_once():
    single = {f"deploy/{KUSTOMIZE_OUTPUT}": rendering("all", 2)}
    config = build_sourced_config({"kustomize": "deploy/"}, single)
    names = {
        render_release(config, config.apps[0], r, image("v1")).find("ConfigMap")["metadata"]["name"]
        for r in config.regions
    }
    assert names == {"settings-all"}


def test_a_region_not_rendered_yet_is_a_config_error_naming_the_file_and_the_command():
    missing = {r: n for r, n in REGIONS.items() if r != "us-west1"}
    with pytest.raises(ConfigError) as raised:
        build_sourced_config(SOURCE, files(missing))
    message = str(raised.value)
    assert f"apps[0].source: deploy/overlays/us-west1/{KUSTOMIZE_OUTPUT}: not rendered" in message
    assert "geodeploy kustomize" in message


def test_a_rendering_is_checked_as_a_template_is():
    broken = files()
    broken[f"deploy/overlays/asia-east1/{KUSTOMIZE_OUTPUT}"] = rendering("asia-east1", 2).replace(
        "apps/v1", "extensions/v1beta2"
    )
    with pytest.raises(ConfigError) as raised:
        build_sourced_config(SOURCE, broken)
    assert f"deploy/overlays/asia-east1/{KUSTOMIZE_OUTPUT}, document 2 (Deployment web)" in str(raised.value)
