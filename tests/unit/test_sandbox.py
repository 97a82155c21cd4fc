from __future__ import annotations

import pytest

from dgr import sandbox
from dgr.errors import ToolError


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.check_host.cache_clear()
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    try:
        with pytest.raises(ToolError, match="needs root"):
            sandbox.check_host()
    finally:
        sandbox.check_host.cache_clear()


@pytest.mark.integration
def test_overlay_is_detected_on_this_host() -> None:
    assert sandbox._has_overlay()
