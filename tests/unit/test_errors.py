"""dgr/errors.py: how errors render and travel; the host's refusals as one message."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from dgr.errors import (
    BuildError,
    DgrError,
    HostError,
    ManifestError,
    error_from_json,
    host_error,
    host_errors,
)
from dgr.fetch import FetchError


def test_a_refusal_names_the_file_and_what_to_do() -> None:
    error = host_error(OSError(errno.EROFS, "Read-only file system", "/t/.lock"), "build")
    assert isinstance(error, HostError)
    assert str(error).startswith("/t/.lock: build: read-only file system — remount it read-write")


def test_a_copy_that_fills_the_disk_names_the_file_written() -> None:
    exc = OSError(errno.ENOSPC, "No space left on device", "/src/image.aci", None, "/dest/image.aci")
    error = host_error(exc)
    assert error is not None and error.path == "/dest/image.aci"


def test_a_write_names_no_file_then_the_folder_given() -> None:
    error = host_error(OSError(errno.ENOSPC, "No space"), "build", where=Path("/target"))
    assert error is not None and error.path == "/target"
    error = host_error(OSError(errno.EACCES, "x", "relative-name"), where=Path("/target"))
    assert error is not None and error.path == "/target"  # shutil.rmtree's names are relative
    error = host_error(OSError(errno.ENOSPC, "x", "/store/.add-1/f"), folder=Path("/store"))
    assert error is not None and error.path == "/store"


def test_other_errors_pass_unchanged() -> None:
    assert host_error(OSError(errno.ENOENT, "No such file")) is None
    with pytest.raises(FileNotFoundError), host_errors("build"):
        raise FileNotFoundError(errno.ENOENT, "No such file", "/x")
    with pytest.raises(HostError, match="disk quota exceeded"), host_errors("build"):
        raise OSError(errno.EDQUOT, "Disk quota exceeded", "/x")


def test_an_error_renders_itself_whole() -> None:
    exc = ManifestError(
        "unknown key", path="/p/aci-manifest.yml", line=3, key="aci.ap", hint="did you mean app?"
    )
    exc.details = "line one\nline two\n"
    assert exc.render() == (
        "/p/aci-manifest.yml:3: unknown key (key: aci.ap) — did you mean app?\n  | line one\n  | line two"
    )
    assert DgrError("plain").render() == "plain"


def test_a_stored_error_comes_back_with_its_class_and_every_field() -> None:
    for exc in (
        BuildError("runlevel build failed", path="/p", hint="see the log", details="tail\n"),
        FetchError("no signature", key="sign", line=7),
        DgrError("generic"),
    ):
        again = error_from_json(json.loads(json.dumps(exc.to_json())))
        assert type(again) is type(exc)
        assert again.render() == exc.render()
        assert again.to_json() == exc.to_json()


def test_an_unknown_class_comes_back_as_a_dgr_error() -> None:
    again = error_from_json({"kind": "GoneError", "message": "m", "hint": "h"})
    assert type(again) is DgrError and str(again) == "m — h"
