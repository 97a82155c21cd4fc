"""dgr/errors.py: the host's refusals (disk full, read-only...) as one message."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from dgr.errors import HostError, host_error, host_errors


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
