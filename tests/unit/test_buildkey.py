"""The build key: which set-env values are inputs of which build, and when a build is reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgr.buildkey import BuildKey, _has_word, build_key
from dgr.config import load_config
from dgr.images import Dependency
from dgr.manifest_load import load_manifest
from dgr.names import ImageName
from dgr.options import BuildOptions
from tests.support.files import write_tree


@pytest.mark.parametrize(
    "text, found",
    [
        (b"echo $MIRROR", True),
        (b"echo ${MIRROR:-x}", True),
        (b'os.environ["MIRROR"]', True),
        (b"MIRROR", True),
        (b"# uses MIRROR\n", True),
        (b"echo $MY_MIRROR $MIRROR2 $MIRRORS", False),
        (b"echo $MY_MIRROR and $MIRROR", True),
        (b"mirror", False),
        (b"", False),
    ],
)
def test_names_match_as_words(text: bytes, found: bool) -> None:
    assert _has_word(text, b"MIRROR") is found


def key_of(project: Path, set_env: dict[str, str], deps: tuple[Dependency, ...] = ()) -> BuildKey:
    options = BuildOptions(config=load_config(project / "home"), set_env=set_env)
    internals = project / "internals"
    return build_key(load_manifest(project), options, internals, deps, (), project / "target")


def test_only_the_values_a_build_reads_are_inputs(tmp_path: Path) -> None:
    project = write_tree(
        tmp_path / "p",
        {
            "aci-manifest.yml": (
                "name: example.com/p:1\nbuilder: {environment: [{name: X, value: $FROM_MANIFEST}]}\n"
            ),
            "runlevels/build/10.sh": "#!/bin/sh\necho $MIRROR\n",
            "files/etc/tool.conf": "proxy=${PROXY_URL}\n",
        },
    )
    env = {"MIRROR": "m", "PROXY_URL": "p", "FROM_MANIFEST": "f", "http_proxy": "h", "UNUSED": "u"}
    key = key_of(project, env)
    assert sorted(key.env) == ["FROM_MANIFEST", "MIRROR", "PROXY_URL"]
    assert key.inputs == key_of(project, {}).inputs  # the values are kept apart
    assert key == key_of(project, {**env, "UNUSED": "other", "http_proxy": "other"})
    assert key != key_of(project, {**env, "MIRROR": "other"})
    assert "s3cret" not in key_of(project, {"MIRROR": "s3cret"}).text()  # values only as digests


def test_dependencies_inherit_scripts_read_values_too(tmp_path: Path) -> None:
    project = write_tree(tmp_path / "p", {"aci-manifest.yml": "name: example.com/p:1\n"})
    layer = write_tree(tmp_path / "layer", {"dgr/runlevels/inherit-build-early/10.sh": "echo $BASE_OPT\n"})
    base = Dependency(ImageName("example.com/base", "1"), "sha512-b", layer)
    top = Dependency(ImageName("example.com/middle", "1"), "sha512-m", tmp_path / "empty", (base,))
    assert list(key_of(project, {"BASE_OPT": "1"}, (top,)).env) == ["BASE_OPT"]
    assert list(key_of(project, {"BASE_OPT": "1"}).env) == []


def test_a_value_not_given_reuses_the_build_made_with_it() -> None:
    built = BuildKey("i", {"MIRROR": "d1"})
    assert BuildKey("i", {}).reuses(built)  # MIRROR not given now
    assert BuildKey("i", {"MIRROR": "d1"}).reuses(built)
    assert not BuildKey("i", {"MIRROR": "d2"}).reuses(built)  # another value
    assert not BuildKey("i", {"MIRROR": "d1"}).reuses(BuildKey("i", {}))  # built without it
    assert not BuildKey("j", {}).reuses(built)


def test_key_file_round_trip_and_old_format() -> None:
    key = BuildKey("abc", {"B": "2", "A": "1"})
    assert BuildKey.parse(key.text()) == key
    assert BuildKey.parse("0123abcd") is None
    assert BuildKey.parse("") is None
