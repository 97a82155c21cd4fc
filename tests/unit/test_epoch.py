from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dgr.epoch import build_epoch, clamp_mtimes, from_environment, git_commit_epoch, reset_mtimes, rfc3339
from dgr.errors import DgrError


def test_source_date_epoch_is_read_and_checked() -> None:
    assert from_environment({}) is None
    assert from_environment({"SOURCE_DATE_EPOCH": ""}) is None
    assert from_environment({"SOURCE_DATE_EPOCH": "0"}) == 0
    assert from_environment({"SOURCE_DATE_EPOCH": "1700000000"}) == 1700000000
    for bad in ("-1", "1e9", " 12", "12.0", "٣", "253402300800"):
        with pytest.raises(DgrError, match="not a number of seconds"):
            from_environment({"SOURCE_DATE_EPOCH": bad})


def test_rfc3339_is_utc_to_the_second() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1700000000) == "2023-11-14T22:13:20Z"
    assert rfc3339(253402300799) == "9999-12-31T23:59:59Z"


def tree(root: Path) -> Path:
    (root / "dir").mkdir(parents=True)
    (root / "dir/new").write_text("new")
    (root / "old").write_text("old")
    (root / "link").symlink_to("/does/not/exist")
    os.utime(root / "old", (100, 100))
    return root


def test_clamp_only_touches_newer_entries_and_never_follows_links(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    changed = clamp_mtimes(root, 1000)
    assert changed == 4  # root, dir, dir/new, link
    assert os.lstat(root / "old").st_mtime == 100
    for path in (root, root / "dir", root / "dir/new", root / "link"):
        assert os.lstat(path).st_mtime == 1000
    assert clamp_mtimes(root, 1000) == 0


def test_reset_sets_every_entry(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    reset_mtimes(root, 1000)
    assert {os.lstat(p).st_mtime for p in [root, *root.rglob("*")]} == {1000}


def commit(repo: Path, when: int, path: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": f"@{when} +0000",
        "GIT_COMMITTER_DATE": f"@{when} +0000",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(str(when))
    subprocess.run(["git", "-C", str(repo), "add", "."], env=env, check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", str(when)], env=env, check=True)


def test_the_default_is_the_last_commit_that_touched_the_project(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    commit(repo, 1000, "aci-a/aci-manifest.yml")
    commit(repo, 2000, "aci-b/aci-manifest.yml")
    assert git_commit_epoch(repo / "aci-a") == 1000
    assert git_commit_epoch(repo / "aci-b") == 2000
    assert build_epoch(repo / "aci-a", {}) == 1000
    assert build_epoch(repo / "aci-a", {"SOURCE_DATE_EPOCH": "5"}) == 5
    (repo / "aci-new").mkdir()
    assert build_epoch(repo / "aci-new", {}) == 0  # nothing committed there yet


def test_outside_git_the_default_is_zero(tmp_path: Path) -> None:
    assert git_commit_epoch(tmp_path) is None
    assert build_epoch(tmp_path, {}) == 0


def test_a_generated_version_takes_the_utc_date_of_the_epoch(tmp_path: Path) -> None:
    from dgr.names import generate_version

    assert generate_version(tmp_path, 1700000000) == "20231114.221320"
