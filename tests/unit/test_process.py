from __future__ import annotations

import errno
import io
import time

import pytest

from dgr.errors import HostError
from dgr.process import run


def test_a_helper_that_outlives_its_parent_does_not_hang_run() -> None:
    """unshare's map helper, orphaned when unshare fails, held dgr's output pipe forever."""
    start = time.monotonic()
    result = run(["/bin/sh", "-c", "sleep 30 & echo started"], timeout=20)
    assert result.output == "started\n" and time.monotonic() - start < 5


class FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_log_on_a_full_disk_is_one_host_error_not_a_thread_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(HostError, match="writing the output of the step: no space left on device"):
        run(["/bin/sh", "-c", "echo one; echo two"], log_file=FullDisk(), what="the step")
    assert "Traceback" not in capsys.readouterr().err
