"""dgr's internals (/dgr/bin, /dgr/lib) in a rootfs that holds nothing else: no Python, no
/bin/sh. prestart runs the runlevels and the bundled templater (SPEC §6, §11)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from dgr.internals import build_internals, internals_digest, internals_size

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap missing (apt-get install bubblewrap)"),
]

SIZE_BUDGET = 15_000_000  # bytes (SPEC §11: under 15 MB)


# --- running a rootfs through bwrap (until dgr.sandbox offers this to tests) ------------


def run_in_rootfs(
    rootfs: Path, argv: Sequence[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `argv` with `rootfs` as `/` (read-write), its own PID namespace, a clean env."""
    command = ["bwrap", "--bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev", "--unshare-pid"]
    command += ["--die-with-parent", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]
    for name, value in (env or {}).items():
        command += ["--setenv", name, value]
    return subprocess.run([*command, *argv], capture_output=True, text=True, timeout=60)


def make_rootfs(root: Path, internals: Path) -> Path:
    """A rootfs holding only dgr's internals and the init project's attributes/templates."""
    shutil.copytree(internals, root / "dgr", symlinks=True)
    files = {
        "dgr/attributes/example.com_app/attributes.yml": "default:\n  dummy: world\n",
        "dgr/templates/etc/templated.tmpl": "Hello {{ dummy }}\n",
        "dgr/templates/etc/templated.tmpl.cfg": 'mode: "0644"\ncheckCmd: "true"\n',
        "dgr/templates/header.partial": "{% macro title() %}dgr{% endmacro %}\n",
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def add_runlevel_script(rootfs: Path, runlevel: str, name: str, body: str) -> str:
    directory = rootfs / "dgr" / "runlevels" / runlevel
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(f"#!/dgr/bin/busybox sh\n{body}\n")
    (directory / name).chmod(0o755)
    return f"/dgr/runlevels/{runlevel}/{name}"


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def internals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_internals(tmp_path_factory.mktemp("dgr-cache"))


@pytest.fixture
def rootfs(tmp_path: Path, internals: Path) -> Path:
    return make_rootfs(tmp_path / "rootfs", internals)


APP = ["/dgr/bin/busybox", "echo", "app started"]


# --- tests -------------------------------------------------------------------------------


def test_internals_hold_dgr_files(internals: Path) -> None:
    for name in ("busybox", "functions.sh", "prestart", "start", "templater"):
        assert (internals / "bin" / name).is_file(), name
    assert sorted(p.name for p in internals.iterdir()) == ["bin", "lib"]


def test_start_renders_templates_in_a_rootfs_without_python(rootfs: Path) -> None:
    assert not (rootfs / "usr" / "bin" / "python3").exists()
    assert not (rootfs / "bin").exists()

    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP])

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "app started"
    rendered = rootfs / "etc" / "templated"
    assert rendered.read_text() == "Hello world\n"
    assert rendered.stat().st_mode & 0o777 == 0o644


def test_prestart_alone_renders_templates(rootfs: Path) -> None:
    result = run_in_rootfs(rootfs, ["/dgr/bin/prestart"])

    assert result.returncode == 0, result.stdout + result.stderr
    assert (rootfs / "etc" / "templated").read_text() == "Hello world\n"


def test_templater_override_changes_the_output(rootfs: Path) -> None:
    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP], {"TEMPLATER_OVERRIDE": '{"dummy": "override"}'})

    assert result.returncode == 0, result.stdout + result.stderr
    assert (rootfs / "etc" / "templated").read_text() == "Hello override\n"


def test_templater_override_base64_wins_when_set(rootfs: Path) -> None:
    encoded = base64.b64encode(json.dumps({"dummy": "b64"}).encode()).decode()
    env = {"TEMPLATER_OVERRIDE": '{"dummy": "plain"}', "TEMPLATER_OVERRIDE_BASE64": f"base64,{encoded}"}

    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP], env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (rootfs / "etc" / "templated").read_text() == "Hello b64\n"


def test_prestart_early_runs_before_templating_and_late_after(rootfs: Path) -> None:
    add_runlevel_script(
        rootfs,
        "prestart-early",
        "10-attributes",
        "printf 'override:\\n  dummy: early\\n' > /dgr/attributes/example.com_app/prestart.yml",
    )
    add_runlevel_script(rootfs, "prestart-late", "10-copy", "cp /etc/templated /etc/seen-by-late")

    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP])

    assert result.returncode == 0, result.stdout + result.stderr
    assert (rootfs / "etc" / "templated").read_text() == "Hello early\n"
    assert (rootfs / "etc" / "seen-by-late").read_text() == "Hello early\n"


def test_failing_prestart_early_script_stops_the_start(rootfs: Path) -> None:
    script = add_runlevel_script(rootfs, "prestart-early", "20-broken", "exit 7")

    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP])

    assert result.returncode != 0
    assert "app started" not in result.stdout
    assert f"Script failed -> {script} (exit 7)" in result.stderr
    assert "prestart-early" in result.stderr
    assert not (rootfs / "etc" / "templated").exists()


def test_templating_failure_stops_the_start(rootfs: Path) -> None:
    (rootfs / "dgr" / "templates" / "etc" / "broken.tmpl").write_text("{{ no_such_attribute }}\n")

    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP])

    assert result.returncode == 1
    assert "app started" not in result.stdout
    assert "templating failed" in result.stderr
    assert "broken.tmpl" in result.stderr


def test_start_without_templates_does_not_need_the_templater(tmp_path: Path, internals: Path) -> None:
    rootfs = tmp_path / "rootfs"
    shutil.copytree(internals, rootfs / "dgr", symlinks=True)

    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP])

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "app started"


def test_builds_are_byte_identical_and_small(tmp_path: Path, internals: Path) -> None:
    # A second build in another process and another cache, so that nothing is shared.
    code = (
        "import sys; from pathlib import Path; from dgr.internals import build_internals; "
        "print(build_internals(Path(sys.argv[1])))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cache")], capture_output=True, text=True, timeout=300
    )
    assert other.returncode == 0, other.stderr
    second = Path(other.stdout.strip())

    assert second != internals
    assert internals_digest(second) == internals_digest(internals)
    assert internals_size(internals) < SIZE_BUDGET


def test_build_is_cached(internals: Path) -> None:
    assert build_internals(internals.parent.parent) == internals


def test_tree_has_fixed_mtimes_and_modes(internals: Path) -> None:
    for path in [internals, *internals.rglob("*")]:
        st = path.lstat()
        assert st.st_mtime == 0, path
        assert st.st_mode & 0o777 in (0o644, 0o755), path
    assert os.access(internals / "bin" / "templater", os.X_OK)


def test_key_is_remembered_and_a_stale_memo_is_ignored(internals: Path) -> None:
    cache = internals.parent.parent
    memos = list((internals.parent / "keys").iterdir())
    assert [m.read_text().strip() for m in memos] == [internals.name]
    memos[0].write_text("no-such-tree\n")
    assert build_internals(cache) == internals
    assert memos[0].read_text().strip() == internals.name
