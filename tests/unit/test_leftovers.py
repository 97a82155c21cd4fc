"""dgr/leftovers.py: temporary names carry their owner; only a dead owner's are removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dgr.leftovers import alive, make_dir, owned, owner_tag, remove_stale, temporary_dir


def dead_owner_name(prefix: str) -> str:
    """A name made by a process that has exited."""
    child = subprocess.run(
        [sys.executable, "-c", f"from dgr.leftovers import owned; print(owned({prefix!r}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return child.stdout.strip() + "xyz"


def test_names_carry_the_pid_and_start_time_of_their_owner() -> None:
    pid, rest = owner_tag().split("-", 1)
    assert int(pid) == os.getpid() and rest.endswith(".") and rest[:-1].isdigit()
    assert alive(owned(".add-") + "abc", ".add-")


def test_a_reused_pid_is_not_the_owner() -> None:
    pid = os.getpid()
    assert not alive(f".add-{pid}-1.abc", ".add-")  # same PID, another start time


def test_remove_stale_keeps_what_live_processes_own(tmp_path: Path) -> None:
    mine = tmp_path / (owned(".add-") + "a")
    mine.mkdir()
    dead = tmp_path / dead_owner_name(".add-")
    (dead / "layer").mkdir(parents=True)
    (dead / "layer" / "file").write_text("x")
    untagged = tmp_path / ".add-old"  # an older dgr's
    untagged.write_text("x")
    other = tmp_path / "sha512-abc"
    other.mkdir()
    assert sorted(remove_stale(tmp_path, ".add-")) == sorted([dead, untagged])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])


def test_remove_stale_does_not_follow_links(tmp_path: Path) -> None:
    target = tmp_path / "keep"
    target.mkdir()
    (target / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    os.symlink(target, tmp_path / "folder" / ".add-old")
    remove_stale(tmp_path / "folder", ".add-")
    assert (target / "file").exists() and not os.path.lexists(tmp_path / "folder" / ".add-old")


def test_make_dir_clears_the_dead_first_and_temporary_dir_cleans_up(tmp_path: Path) -> None:
    dead = tmp_path / dead_owner_name("run-")
    dead.mkdir()
    made = make_dir(tmp_path, "run-")
    assert made.name.startswith(owned("run-")) and not dead.exists()
    with temporary_dir(tmp_path, "fetch-") as tmp:
        (tmp / "x").write_text("x")
    assert not tmp.exists()
    assert remove_stale(tmp_path / "missing", "run-") == []


def test_a_longer_prefix_keeps_its_owner(tmp_path: Path) -> None:
    """`.image.aci.asc.<owner>...` (a signature being written) is not taken for a stale
    `.image.aci.` temporary."""
    signing = tmp_path / (owned(".image.aci.asc.") + "abc.tmp")
    signing.write_text("x")
    remove_stale(tmp_path, ".image.aci.")
    assert signing.exists()
