"""Placeholders are substituted after parsing, inside string values only: a value cannot
inject YAML, keys are never touched, and text that merely looks like a placeholder or
like broken YAML is delivered as written.

The rule, exactly: in every string value (at any depth, in lists too), each of
__IMAGE__ __ZONE__ __IP__ __REGION__ __NAMESPACE__ __APP__ is replaced by its value, in
one pass (a value is never scanned again); everything else in the string stays as
written, including unknown `__FOO__` tokens. Keys and non-string values are kept.
"""

from __future__ import annotations

from shared.manifest_sources import Placeholder, substitute_placeholders
from shared.rendering import render_release
from tests.core.builders import build_sourced_config, image

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: __IMAGE__}]}
"""

# Single-quoted YAML scalars: the values hold `{`, `[`, `"` and `:` that would break the
# file had they been pasted into it as text.
CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: tricky}
data:
  exact: '__IMAGE__'
  inside: '__IMAGE__ is: {a: [b'
  breaking: '"}: x'
  unknown: '__FOO__ and __image__ and __IMAGE_'
  several: '__APP__.__NAMESPACE__/__REGION__/__ZONE__/__IP__'
  __IMAGE__: 'a key is never substituted'
  number: '8080'
"""


def rendered_config_map():
    config = build_sourced_config({"template": "k8s.yaml"}, {"k8s.yaml": DEPLOYMENT + "---\n" + CONFIG_MAP})
    app = config.apps[0]
    return render_release(config, app, config.region("us-west1"), image("v1")).find("ConfigMap")["data"]


def test_a_config_map_value_is_delivered_verbatim_except_for_the_placeholders():
    pinned = image("v1").reference
    assert rendered_config_map() == {
        "exact": pinned,
        "inside": f"{pinned} is: {{a: [b",
        "breaking": '"}: x',
        "unknown": "__FOO__ and __image__ and __IMAGE_",
        "several": "shop.shop/us-west1/us-west1-a/192.0.2.20",
        "__IMAGE__": "a key is never substituted",
        "number": "8080",
    }


VALUES = {
    Placeholder.IMAGE: "repo@sha256:abc",
    Placeholder.ZONE: "__REGION__",  # a value that looks like a placeholder is not rescanned
    Placeholder.IP: "192.0.2.1",
    Placeholder.REGION: "r1",
    Placeholder.NAMESPACE: "ns",
    Placeholder.APP: "shop",
}


def test_a_string_that_is_exactly_a_placeholder_becomes_the_value():
    assert substitute_placeholders("__IP__", VALUES) == "192.0.2.1"


def test_a_placeholder_inside_a_longer_string_is_replaced_in_place():
    assert substitute_placeholders("shop-__REGION__", VALUES) == "shop-r1"


def test_substituted_values_are_not_scanned_again():
    assert substitute_placeholders("__ZONE__-__REGION__", VALUES) == "__REGION__-r1"


def test_keys_numbers_booleans_and_nulls_are_kept_and_lists_are_walked():
    value = {"__APP__": ["__APP__", 1, True, None, {"k": "__NAMESPACE__"}], "n": 2.5}
    assert substitute_placeholders(value, VALUES) == {"__APP__": ["shop", 1, True, None, {"k": "ns"}], "n": 2.5}


def test_substitution_returns_a_copy():
    value = {"a": ["__APP__"]}
    result = substitute_placeholders(value, VALUES)
    result["a"].append("x")
    assert value == {"a": ["__APP__"]}
