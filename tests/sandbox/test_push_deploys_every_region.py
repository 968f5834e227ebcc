"""An Artifact Registry push deploys the digest to every region with no other step."""

from __future__ import annotations

import time

import pytest

from sandbox.driver import digest_for

pytestmark = pytest.mark.sandbox


def test_push_runs_the_digest_in_every_region(sandbox, shop):
    _path, config = shop
    digest = digest_for("shop-v1")
    image = f"{config.apps[0].repository}@{digest}"
    started = time.monotonic()

    sandbox.push_image(config, digest, tag="v1.0.0")

    regions = [r.name for r in config.regions]
    sandbox.wait_for_image(config, regions, image, timeout=90)
    elapsed = time.monotonic() - started
    print(f"gcr publish → all {len(regions)} regions Available: {elapsed:.1f} s")
    for region in regions:
        record = sandbox.release_record(config, region)
        assert record.current.image == image
        assert record.current.trigger.type == "push" and record.current.trigger.tag == "v1.0.0"
        result = sandbox.wait_for_result(
            config,
            lambda r, region=region: (r["region"], r.get("image"), r["status"]) == (region, image, "succeeded"),
            what=f"a success result from {region}",
        )
        assert result["manifest_hash"] == record.current.manifest_hash
        # Every rendered object was applied by server-side apply with our field manager.
        for kind in ("namespace", "service", "deployment", "horizontalpodautoscaler", "poddisruptionbudget"):
            obj = sandbox.get(config, region, kind, "shop", "shop")
            managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
            assert ("geodeploy", "Apply") in managers, (kind, managers)
