"""Configure at start: built images run with `dgr run` and under podman, templated at start."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from dgr.build import build
from dgr.container import Container, image_spec, run_image
from dgr.init import init_project
from dgr.options import BuildOptions
from tests.support.podman import Podman

pytestmark = pytest.mark.integration


@pytest.fixture
def init_image(tmp_path: Path, options: BuildOptions):  # type: ignore[no-untyped-def]
    project = tmp_path / "aci-init"
    init_project(project)
    return build(project, options)


def run_output(result, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    out = Container(image_spec(result, env=env, exec_=argv)).run(timeout=60)
    return out.returncode, out.output


def test_prestart_renders_template_at_start(init_image) -> None:  # type: ignore[no-untyped-def]
    code, output = run_output(init_image, "/dgr/bin/busybox", "cat", "/etc/templated")
    assert code == 0
    assert output.splitlines()[-1] == "Hello world"


def test_override_json_and_base64(init_image) -> None:  # type: ignore[no-untyped-def]
    override = json.dumps({"dummy": "there"})
    code, output = run_output(
        init_image, "/dgr/bin/busybox", "cat", "/etc/templated", env={"TEMPLATER_OVERRIDE": override}
    )
    assert (code, output.splitlines()[-1]) == (0, "Hello there")
    encoded = "base64," + base64.b64encode(b'{"dummy": "b64"}').decode()
    code, output = run_output(
        init_image, "/dgr/bin/busybox", "cat", "/etc/templated", env={"TEMPLATER_OVERRIDE_BASE64": encoded}
    )
    assert (code, output.splitlines()[-1]) == (0, "Hello b64")


def test_malformed_override_stops_the_start(init_image) -> None:  # type: ignore[no-untyped-def]
    code, output = run_output(
        init_image, "/dgr/bin/busybox", "echo", "app ran", env={"TEMPLATER_OVERRIDE": "{not json"}
    )
    assert code != 0
    assert "TEMPLATER_OVERRIDE" in output
    assert "app ran" not in output


def test_exit_code_passes_through(init_image) -> None:  # type: ignore[no-untyped-def]
    assert run_image(init_image, exec_=["/dgr/bin/busybox", "sh", "-c", "exit 7"]) == 7


def test_templater_runs_without_python_in_the_image(init_image) -> None:  # type: ignore[no-untyped-def]
    """The init image is busybox + dgr's files only: no Python anywhere but dgr's bundle."""
    for layer in init_image.layers:
        pythons = [p for p in layer.rglob("python3*") if not str(p.relative_to(layer)).startswith("dgr/")]
        assert not pythons, pythons
    code, output = run_output(
        init_image,
        "/dgr/bin/busybox",
        "sh",
        "-c",
        "command -v python3 || echo no-python; cat /etc/templated",
    )
    assert output.splitlines()[-2:] == ["no-python", "Hello world"]


def test_container_exec_and_read_file(init_image) -> None:  # type: ignore[no-untyped-def]
    spec = image_spec(init_image, exec_=["/dgr/bin/busybox", "sleep", "60"])
    with Container(spec) as container:
        container.init_pid()
        # prestart runs before the app: wait for its result
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if container.exec(["/dgr/bin/busybox", "test", "-s", "/etc/templated"]).returncode == 0:
                break
            time.sleep(0.05)
        assert container.read_file("/etc/templated") == "Hello world\n", container.logs()
        assert container.exec(["/dgr/bin/busybox", "sh", "-c", "echo $((6*7))"]).output == "42\n"
        assert container.ip_addresses() == ["127.0.0.1"]
    assert not container.running()


def test_oci_layout_runs_under_podman_with_prestart(init_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Podman(tmp_path / "podman") as podman:
        image = podman.load_oci(init_image.workspace.oci, init_image.name.version, name="aci-dummy")
        out = podman.run(image, "/dgr/bin/busybox", "cat", "/etc/templated")
        assert out.output.splitlines()[-1] == "Hello world"
        out = podman.podman(
            "run",
            "--rm",
            "--network=none",
            "-e",
            'TEMPLATER_OVERRIDE={"dummy": "podman"}',
            image,
            "/dgr/bin/busybox",
            "cat",
            "/etc/templated",
        )
        assert out.output.splitlines()[-1] == "Hello podman"


def test_manifest_takes_version_from_build_attributes(tmp_path: Path, options: BuildOptions) -> None:
    project = tmp_path / "aci-versioned"
    (project / "runlevels" / "build").mkdir(parents=True)
    (project / "aci-manifest.yml").write_text("name: example.com/aci-versioned:{{ version }}-1\n")
    (project / "runlevels" / "build" / "10.version.sh").write_text(
        "#!/dgr/bin/busybox sh\n"
        "printf 'default:\\n  version: 1.0.0\\n' > /dgr/builder/attributes/version.yml\n"
    )
    result = build(project, options)
    assert str(result.name) == "example.com/aci-versioned:1.0.0-1"
    assert (result.workspace.version_file).read_text() == "example.com/aci-versioned:1.0.0-1"


def test_manifest_missing_value_fails_the_build(tmp_path: Path, options: BuildOptions) -> None:
    from dgr.errors import DgrError

    project = tmp_path / "aci-unversioned"
    project.mkdir()
    (project / "aci-manifest.yml").write_text("name: example.com/aci-unversioned:{{ version }}-1\n")
    with pytest.raises(DgrError, match="version"):
        build(project, options)
    assert not (project / "target" / "image.aci").exists()


def test_run_publishes_a_port_on_the_host(tmp_path: Path, dgr_home: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    project = tmp_path / "aci-web"
    (project / "files" / "srv").mkdir(parents=True)
    (project / "files" / "srv" / "index.html").write_text("published\n")
    (project / "aci-manifest.yml").write_text(
        "name: example.com/aci-web:1\n"
        "aci:\n  app:\n"
        "    exec: [/dgr/bin/busybox, httpd, -f, -p, '8080', -h, /srv]\n"
        "    ports: [{name: http, port: 8080}]\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host_port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "dgr.cli", "-H", str(dgr_home), "-W", str(project), "run",
            "--publish", f"{host_port}:http"]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/", timeout=5) as page:
                    assert page.read() == b"published\n"
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", host_port))
