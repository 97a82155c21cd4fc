"""dgr/limits.py: how far an archive may expand, and the `limits` section of config.yml."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgr.config import load_config
from dgr.errors import BuildError, DgrError
from dgr.limits import DEFAULT, EXPANSION_FLOOR, GIB, Limits, limits, parse_size


def test_small_archives_may_expand_up_to_the_floor() -> None:
    budget = DEFAULT.budget(1000, "a.aci")  # a 1 KB archive
    budget.take("rootfs/text", EXPANSION_FLOOR - 1)
    with pytest.raises(
        BuildError, match=r"'rootfs/more': the archive \(1000 bytes\) expands beyond 64.0 MiB"
    ):
        budget.take("rootfs/more", 2)


def test_large_archives_may_expand_a_hundred_times() -> None:
    budget = DEFAULT.budget(10 << 20, "a.aci")
    budget.take("a", 900 << 20)
    with pytest.raises(BuildError, match=r"100 times its size") as raised:
        budget.take("b", 200 << 20)
    assert raised.value.key == "limits.expansion" and raised.value.path == "a.aci"


def test_the_absolute_limit_and_the_file_count() -> None:
    small = Limits(image_size=1000, files=3)
    budget = small.budget(None, "stream")  # size unknown: the absolute limit only
    with pytest.raises(BuildError, match=r"expands beyond 1000 bytes \(key: limits.imageSize\)"):
        budget.take("big", 1001)
    budget = small.budget(None, "stream")
    for name in "abc":
        budget.take(name, 0)
    with pytest.raises(BuildError, match=r"'d': the archive holds more than 3 entries"):
        budget.take("d", 0)


@pytest.mark.parametrize(
    ("text", "size"),
    [(1024, 1024), ("10GiB", 10 * GIB), ("500MB", 500_000_000), ("1.5 KiB", 1536), ("2tb", 2 * 10**12)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text, "k", "w") == size


@pytest.mark.parametrize("text", ["banana", "-1", 0, True, "10 parsecs"])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(DgrError, match="must be a size in bytes"):
        parse_size(text, "limits.imageSize", "config.yml")


def test_config_section(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("limits: {imageSize: 2GiB, expansion: 20, files: 50}\n")
    assert limits(load_config(tmp_path)) == Limits(2 * GIB, 20.0, 50)
    (tmp_path / "config.yml").write_text("limits: {size: 1}\n")
    with pytest.raises(DgrError, match="unknown key 'size' in limits"):
        limits(load_config(tmp_path))
    (tmp_path / "config.yml").write_text("")
    assert limits(load_config(tmp_path)) == DEFAULT
