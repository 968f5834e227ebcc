"""The built-in renderer's output is pinned: the example config's app renders to these
exact manifest hashes in each region. A change to rendering that moves them changes
every deployed release (each region would redeploy on its next push, and a rollback
would no longer reproduce its release), so it must be deliberate: update the hashes in
the same commit and say why."""

from __future__ import annotations

import pytest

from shared.contracts import ImageRef
from shared.rendering import render_release
from tests.core.builders import shipped_config

PINNED_DIGEST = "sha256:3bfc269594ef649228e9a74bab00f042efc91d5acc6fbee31a382e80d42388fe"

# Computed from the renderer before per-app manifest sources existed (issue 12).
EXAMPLE_HASHES = {
    "europe-west1": "sha256:ebc6a439e22fa272dc80e610466676cd566309c07fb4d28ceed2015327b47a0f",
    "us-west1": "sha256:98490b6b9606b8e429697cc798d54407a822a1faf48c58c51644b562d0827833",
}


@pytest.mark.parametrize("region", sorted(EXAMPLE_HASHES))
def test_the_example_apps_release_hash_is_unchanged(region):
    config = shipped_config("example")
    app = config.app("image-charts")
    rendered = render_release(config, app, config.region(region), ImageRef(app.repository, PINNED_DIGEST))
    assert rendered.manifest_hash == EXAMPLE_HASHES[region]
