"""Fixtures of the fault suite: a project that built fine, copied for each case (harness.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dgr.cli import main
from tests.faults.harness import (
    BASE_MANIFEST,
    Case,
    Env,
    Result,
    check_message,
    dgr,
    leftovers,
    outputs,
    snapshot,
    untouched_areas,
)


@pytest.fixture(scope="session")
def fault_base(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A project built once per worker: each case starts from a copy, previous outputs included."""
    root = tmp_path_factory.mktemp("fault-base")
    project = root / "aci-fault"
    project.mkdir()
    (project / "aci-manifest.yml").write_text(BASE_MANIFEST)
    home = root / "home"
    home.mkdir()
    (home / "config.yml").write_text(f"cachePath: {cache_dir}\nstorePath: {root / 'store'}\n")
    assert main(["-q", "-H", str(home), "-W", str(project), "build"]) == 0
    return project


@pytest.fixture
def fault_env(tmp_path: Path, fault_base: Path, cache_dir: Path) -> Env:
    project = tmp_path / "aci-fault"
    subprocess.run(["cp", "-a", str(fault_base), str(project)], check=True)
    home = tmp_path / "home"
    home.mkdir()
    store = tmp_path / "store"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = Env(tmp_path, project, home, store, tmp)
    env.extra["base_config"] = f"cachePath: {cache_dir}\nstorePath: {store}\n"
    env.extra["cache"] = cache_dir
    env.config("")
    return env


@pytest.fixture
def run_case(fault_env: Env, capfd: pytest.CaptureFixture[str]) -> Callable[[Case], Result]:
    """Run a case and check everything harness.py promises; returns the failing run."""

    def run(case: Case) -> Result:
        env = fault_env
        env.config(case.config)
        env.write(case.files)
        if case.setup is not None:
            case.setup(env)
        before_outputs = outputs(env)
        skip = untouched_areas(env)
        before = snapshot(env.root, skip)
        capfd.readouterr()
        result = dgr(env, case.command, capfd)
        check_message(result, case)
        assert snapshot(env.root, skip) == before, "written outside the target, the store and TMPDIR"
        assert outputs(env) == before_outputs, "previous outputs changed"
        cache = env.extra["cache"]
        assert isinstance(cache, Path)
        assert leftovers(env, cache) == []
        if case.fix is not None:
            case.fix(env)
        else:
            env.remove(case.files)
            (env.project / "aci-manifest.yml").write_text(BASE_MANIFEST)
            env.config("")
        again = dgr(env, case.rerun or case.command, capfd)
        assert again.code == 0, f"the run after the fix failed:\n{again.err}"
        assert leftovers(env, cache) == []
        return result

    return run
