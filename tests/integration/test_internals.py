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

from dgr.build import build
from dgr.init import init_project
from dgr.internals import build_internals, bundle_identity, internals_digest, internals_size
from dgr.options import BuildOptions
from dgr.templater.prepared import FILE_NAME, write_prepared

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
    """A rootfs holding only dgr's internals and the init project's attributes/templates,
    with the templater's run prepared as `dgr build` does."""
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
    identity = bundle_identity(internals)
    assert write_prepared(root / "dgr", root / "dgr", identity=identity, directory_at_start="/dgr") is None
    return root


def without_jinja_and_yaml(rootfs: Path) -> None:
    """Remove Jinja2 and PyYAML from the rootfs' bundle: only a prepared run still works."""
    for package in ("jinja2", "yaml"):
        shutil.rmtree(rootfs / "dgr" / "lib" / "python" / "modules" / package)


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


def test_a_prepared_start_needs_neither_jinja_nor_yaml(rootfs: Path) -> None:
    without_jinja_and_yaml(rootfs)

    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP], {"LOG_LEVEL": "debug"})

    assert result.returncode == 0, result.stdout + result.stderr
    assert "templater: wrote /etc/templated" in result.stderr
    assert (rootfs / "etc" / "templated").read_text() == "Hello world\n"
    # with an override, the run renders: it needs Jinja2
    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP], {"TEMPLATER_OVERRIDE": '{"dummy": "x"}'})
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr


def test_configmap_attributes_merge_over_a_prepared_run(rootfs: Path) -> None:
    mount = rootfs / "dgr" / "attributes" / "config"
    (mount / "..2024_01_01").mkdir(parents=True)
    (mount / "..2024_01_01" / "app.yml").write_text("override:\n  dummy: configmap\n")
    (mount / "..data").symlink_to("..2024_01_01")
    (mount / "app.yml").symlink_to("..data/app.yml")

    result = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP], {"TEMPLATER_OVERRIDE": '{"other": 1}'})

    assert result.returncode == 0, result.stdout + result.stderr
    assert (rootfs / "etc" / "templated").read_text() == "Hello configmap\n"


def test_templater_command_keeps_its_interface(rootfs: Path) -> None:
    assert "@TEMPLATER@" not in (rootfs / "dgr" / "bin" / "prestart").read_text()
    (rootfs / "dgr" / FILE_NAME).unlink()

    result = run_in_rootfs(rootfs, ["/dgr/bin/templater", "-L", "debug", "-t", "/out", "/dgr"])

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "templater: wrote /out/etc/templated\n"
    usage = run_in_rootfs(rootfs, ["/dgr/bin/templater"])
    assert usage.returncode == 2 and "usage: python -m dgr.templater" in usage.stderr


def test_identity_is_the_cache_key(internals: Path) -> None:
    assert bundle_identity(internals) == internals.name


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


# --- images built by dgr ---------------------------------------------------------------------


def image_rootfs(layers: Sequence[Path], root: Path) -> Path:
    """The layers of an image (no whiteouts in these) copied on top of each other."""
    shutil.rmtree(root, ignore_errors=True)
    for layer in layers:
        shutil.copytree(layer, root, symlinks=True, dirs_exist_ok=True)
    return root


def test_built_image_starts_from_its_prepared_run_rebuilt_on_change(
    tmp_path: Path, options: BuildOptions
) -> None:
    project = tmp_path / "aci-init"
    init_project(project)
    outputs = []
    for change in ("", "template", "attribute"):
        if change == "template":
            (project / "templates" / "etc" / "templated.tmpl").write_text("Bye {{ dummy }}\n")
        if change == "attribute":
            (project / "attributes" / "attributes.yml").write_text("default:\n  dummy: there\n")
        result = build(project, options)
        rootfs = image_rootfs(result.layers, tmp_path / f"rootfs-{change}")
        without_jinja_and_yaml(rootfs)
        started = run_in_rootfs(rootfs, ["/dgr/bin/start", *APP])
        assert started.returncode == 0, started.stdout + started.stderr
        outputs.append((rootfs / "etc" / "templated").read_text())
    assert outputs == ["Hello world\n", "Bye world\n", "Bye there\n"]
