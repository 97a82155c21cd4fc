"""dgr.structure's values: what a path's mode says, what an image view delegates."""

from __future__ import annotations

import stat
from typing import Any

import pytest

from dgr.errors import DgrError
from dgr.structure import ImageView, PathInfo


def test_path_info_of_a_setuid_file() -> None:
    info = PathInfo("/opt/run", stat.S_IFREG | 0o4755, 33, 44, 10)
    assert (info.kind, info.mode, info.permissions, info.owner) == ("file", 0o4755, "-rwsr-xr-x", "33:44")


def test_path_info_of_a_symlink_and_a_directory() -> None:
    assert PathInfo("/l", stat.S_IFLNK | 0o777, 0, 0, 4, "x").permissions == "lrwxrwxrwx"
    assert PathInfo("/d", stat.S_IFDIR | 0o1777, 0, 0, 0).kind == "directory"


class FakeResult:
    name = "example.com/x:1"
    layers = ("a", "b")


def test_view_keeps_the_build_result_attributes_and_fails_as_told() -> None:
    view = ImageView(FakeResult())  # type: ignore[arg-type]
    assert view.layers == ("a", "b") and view.name == "example.com/x:1"
    with pytest.raises(DgrError, match="not an absolute path"):
        view.lookup("etc")
    failures: list[str] = []

    def fail(error: DgrError) -> Any:
        failures.append(error.message)
        raise RuntimeError

    with pytest.raises(RuntimeError):
        ImageView(FakeResult(), fail=fail).run([])  # type: ignore[arg-type]
    assert failures == ["no command to run in the image"]
