from __future__ import annotations

from pathlib import Path

import pytest

from dgr import sandbox
from dgr.sandbox import Bind, Overlay, Sandbox
from dgr.userns import IDENTITY, IdMap


def test_a_sandbox_gets_its_own_user_namespace_and_few_capabilities(tmp_path: Path) -> None:
    box = Sandbox(root=tmp_path / "root", ids=IdMap(100000, 100000))
    argv = box.command(["true"])
    bwrap = next(i for i, a in enumerate(argv) if a.endswith("/bwrap"))
    assert "--map-users=100000,0,65536" in argv[:bwrap]
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    caps = {argv[i + 1] for i, a in enumerate(argv) if a == "--cap-add"}
    assert caps == set(sandbox.CAPABILITIES)
    assert not caps & {"CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_MKNOD", "CAP_SYS_MODULE"}


def test_rootless_sandboxes_share_dgrs_namespace(tmp_path: Path) -> None:
    argv = Sandbox(root=tmp_path, ids=IDENTITY).command(["true"])
    assert not any(a.startswith("--map-users") for a in argv) and "--user" not in argv


def test_mounts_are_made_before_the_user_namespace(tmp_path: Path) -> None:
    box = Sandbox(
        root=tmp_path / "m",
        overlays=(Overlay(tmp_path / "m", (tmp_path / "l",), tmp_path / "u", tmp_path / "w"),),
        binds=(
            Bind(tmp_path / "project", "/dgr/aci-home"),
            Bind(tmp_path / "cache", "/cache", read_only=False),
        ),
        ids=IdMap(100000, 100000),
    )
    argv = box.command(["true"])
    user = argv.index("--map-users=100000,0,65536")
    for value in (str(tmp_path / "l"), "ro", str(tmp_path / "project"), "rw", str(tmp_path / "cache")):
        assert argv.index(value) < user  # mounted by dgr, in the private mount namespace
    assert argv[argv.index("--bind") + 1] == sandbox.ROOT_VIEW


@pytest.mark.integration
def test_overlay_is_detected_on_this_host() -> None:
    assert sandbox._has_overlay()
