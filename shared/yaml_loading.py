"""Reading YAML strictly: the config file and the manifest files an app brings.

Pure (text in, data out). PyYAML is imported inside the functions: a function instance
whose config is already parsed never pays for it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["load_manifest_documents", "load_strict"]

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


@cache
def _strict_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """Safe YAML that refuses a key written twice (PyYAML would keep the last)."""

    def mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return dict(loader.construct_pairs(node, deep=deep))

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


@cache
def _manifest_loader() -> type:
    class ManifestLoader(_strict_loader()):  # type: ignore[misc]
        """Strict, and reads an unquoted date as the string Kubernetes sees (kubectl's YAML
        becomes JSON, which has no timestamps), not as a Python datetime."""

    ManifestLoader.yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in ManifestLoader.yaml_implicit_resolvers.items()
    }
    return ManifestLoader


def load_strict(text: str) -> Any:
    """One YAML document; raises yaml.YAMLError (a duplicate key is one)."""
    import yaml

    return yaml.load(text, Loader=_strict_loader())


def load_manifest_documents(text: str) -> list[Any]:
    """Every document of a multi-document manifest file, empty ones as None (so positions
    match what a reader counts); raises yaml.YAMLError."""
    import yaml

    return list(yaml.load_all(text, Loader=_manifest_loader()))
