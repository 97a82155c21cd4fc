from __future__ import annotations

import time

from dgr.process import run


def test_a_helper_that_outlives_its_parent_does_not_hang_run() -> None:
    """unshare's map helper, orphaned when unshare fails, held dgr's output pipe forever."""
    start = time.monotonic()
    result = run(["/bin/sh", "-c", "sleep 30 & echo started"], timeout=20)
    assert result.output == "started\n" and time.monotonic() - start < 5
