"""apps[].tag_filter is RE2: matched in linear time against tags whoever can push chooses,
so no pattern can be made to backtrack for ever; what RE2 cannot do is refused when the
config is loaded, naming the key; and loading stays light (re2 is imported on first use)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from shared.errors import ConfigError
from tests.core.builders import REPO_ROOT, build_config, changed, config_data

CATASTROPHIC = r"v([0-9]+\.?)+"  # under Python's re: 1.75 s at 28 characters, doubling per character


def app_with_filter(pattern: str):
    return build_config(changed(config_data(), "apps[0].tag_filter", pattern)).app("shop")


def test_a_catastrophic_pattern_answers_on_a_10000_character_tag():
    # In a child process with a deadline: a backtracking engine would hang the suite, not fail it.
    code = f"""
from tests.core.test_tag_filter_re2 import app_with_filter
app = app_with_filter({CATASTROPHIC!r})
print(app.accepts_tag("v" + "1" * 10_000 + "x"), app.accepts_tag("v" + "1." * 5_000), app.accepts_tag("v1.2.3"))
"""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the tag filter backtracked: no answer within 60 s")
    assert done.stdout.split() == ["False", "True", "True"]


@pytest.mark.parametrize(
    "pattern",
    [r"v(?=[0-9])[0-9.]+", r"v(?![a-z]).*", r"(?<=v)[0-9]+", r"(v)[0-9]+\1", r"(?P<n>v)[0-9]+(?P=n)"],
    ids=["lookahead", "negative-lookahead", "lookbehind", "backreference", "named-backreference"],
)
def test_a_pattern_re2_cannot_run_is_refused_naming_the_key(pattern):
    with pytest.raises(ConfigError) as caught:
        build_config(changed(config_data(), "apps[0].tag_filter", pattern))
    assert "apps[0].tag_filter: not a valid RE2 regular expression" in str(caught.value)


def test_the_key_of_the_second_app_is_named():
    data = changed(config_data(worker=True), "apps[1].tag_filter", r"v(?=1).*")
    with pytest.raises(ConfigError, match=r"apps\[1\]\.tag_filter: "):
        build_config(data)


@pytest.mark.parametrize(
    ("pattern", "tag", "accepted"),
    [
        (r"v[0-9]+\.[0-9]+\.[0-9]+", "v1.22.333", True),
        (r"v[0-9]+\.[0-9]+\.[0-9]+", "v1.22.333-rc1", False),
        (r"v\d+\.\d+\.\d+|stable", "stable", True),
        (r"(?i)release-[a-z]+", "RELEASE-One", True),
        (r"[[:alpha:]]+-\d+", "build-42", True),
    ],
)
def test_re2_syntax_matches_the_whole_tag(pattern, tag, accepted):
    assert app_with_filter(pattern).accepts_tag(tag) is accepted


def test_loading_a_config_imports_re2_only_for_a_filter_that_needs_it(tmp_path):
    path = tmp_path / "geodeploy.yaml"
    path.write_text(yaml.safe_dump(config_data()))  # the default filter, .*
    script = f"""
import sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from shared.config import load_config
config = load_config({str(path)!r})
assert "re2" not in sys.modules, "imported by loading the config"
assert config.app("shop").accepts_tag("v1.0.0")
assert "re2" in sys.modules, "the filter did not run on RE2"
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("pattern", [r"v{,3}", r"v[0-9]{,2}\.x"])
def test_an_open_lower_bound_is_refused_since_re2_reads_it_as_text(pattern):
    # Python's re would read {,3} as 0 to 3 repeats; RE2 matches the text "{,3}", so the
    # filter would silently refuse every tag.
    with pytest.raises(ConfigError, match=r"apps\[0\]\.tag_filter: .*write `\{0,n\}`"):
        build_config(changed(config_data(), "apps[0].tag_filter", pattern))
    assert app_with_filter(r"v\{,3\}").accepts_tag("v{,3}")  # escaped, it is the text it says
