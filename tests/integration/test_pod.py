"""Pods: two busybox apps built, run in one network namespace, tested, exported to Kubernetes.

The `server` app serves a page rendered from attributes with busybox httpd; the `client`
app fetches it from 127.0.0.1 with busybox wget and serves its copy on another port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgr.config import load_config
from dgr.container import Container, child_pids
from dgr.options import BuildOptions
from dgr.plan import plan_build_pod
from dgr.pod import PodBuild
from dgr.podrun import start_pod
from dgr.podtest import start_test_pod
from dgr.process import run
from tests.support.podman import Podman

pytestmark = pytest.mark.integration

DGR = Path(sys.executable).with_name("dgr")
BB = "/dgr/bin/busybox"
CLIENT = (
    f"{BB} mkdir -p /srv/copy; "
    f"until {BB} wget -q -O /srv/copy/got.html http://127.0.0.1:8080/; do {BB} sleep 0.1; done; "
    f"exec {BB} httpd -f -p 8081 -h /srv/copy"
)
FILES = {
    "aci-web/aci-manifest.yml": (
        "name: example.com/aci-web:1\n"
        "aci:\n  app:\n"
        "    exec: [/dgr/bin/busybox, httpd, -f, -p, '8080', -h, /srv]\n"
        "    ports: [{name: http, port: 8080}]\n"
    ),
    # Which layer wins: word (image < pod), other (image < pod < app folder's override).
    "aci-web/attributes/web.yml": "default:\n  word: image\n  other: image\n  third: image\n",
    "aci-web/templates/srv/index.html.tmpl": "{{ word }} {{ other }} {{ third }}\n",
    "pod-pair/pod-manifest.yml": (
        "name: example.com/pod-pair:1\n"
        "pod:\n  apps:\n"
        "    - name: server\n      dependencies: [example.com/aci-web:1]\n"
        "    - name: client\n      dependencies: [example.com/aci-web:1]\n"
        f"      app:\n        exec: [/dgr/bin/busybox, sh, -c, '{CLIENT}']\n"
        "        ports: [{name: copy, port: 8081}]\n"
    ),
    "pod-pair/attributes/pod.yml": "default:\n  word: pod\n  other: pod\n",
    "pod-pair/aci-server/attributes/server.yml": "override:\n  other: app-override\n",
    "pod-pair/tests/wait.sh": "#!/bin/sh\nwget -q -O /dev/null http://127.0.0.1:8081/got.html\n",
    "pod-pair/tests/pair.bats": (
        '@test "the client fetched the server\'s page over 127.0.0.1" {\n'
        "  run wget -q -O - http://127.0.0.1:8081/got.html\n"
        '  [ "$status" -eq 0 ]\n'
        '  [ "$output" = "pod app-override image" ]\n'
        "}\n"
    ),
    "pod-pair/tests/test_pair.py": (
        "def test_apps_share_loopback(dgr_pod):\n"
        "    out = dgr_pod['client'].exec(['/dgr/bin/busybox', 'wget', '-q', '-O', '-',\n"
        "                                  'http://127.0.0.1:8080/']).output\n"
        "    assert out.strip() == 'pod app-override image'\n"
    ),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    repo = tmp_path_factory.mktemp("pods")
    for rel, text in FILES.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.chmod(repo / "pod-pair" / "tests" / "wait.sh", 0o755)
    home = repo / ".home"
    home.mkdir()
    (home / "config.yml").write_text(f"cachePath: {cache_dir}\nstorePath: {repo / '.store'}\n")
    return repo


@pytest.fixture(scope="module")
def options(repo: Path) -> BuildOptions:
    return BuildOptions(config=load_config(repo / ".home"))


@pytest.fixture(scope="module")
def built(repo: Path, options: BuildOptions) -> PodBuild:
    return plan_build_pod(repo / "pod-pair", options)


def netns_holders(inode: int) -> list[int]:
    """PIDs of the processes in the network namespace `inode`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def wait_for(check, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def read(container: Container, path: str) -> str | None:
    """The content of `path` in a running container, None until it exists."""
    out = container.exec([BB, "cat", path])
    return out.output.strip() if out.returncode == 0 else None


def test_build_writes_app_images_and_a_valid_pod_manifest(built: PodBuild, repo: Path) -> None:
    assert [str(a.result.name) for a in built.apps] == [
        "example.com/pod-pair-server:1",
        "example.com/pod-pair-client:1",
    ]
    # an app folder is the app's project; an app without one gets a generated folder
    assert built.app("server").result.workspace.target == repo / "pod-pair" / "aci-server" / "target"
    assert built.app("client").result.workspace.target.is_relative_to(built.target)
    data = json.loads(built.manifest_json.read_text())
    assert data["acKind"] == "PodManifest"
    assert [(a["name"], a["image"]["id"]) for a in data["apps"]] == [
        (a.name, a.result.image_id) for a in built.apps
    ]
    assert data["apps"][1]["app"]["exec"][:3] == ["/dgr/bin/busybox", "sh", "-c"]  # the pod's exec
    assert data["apps"][0]["app"]["ports"][0]["port"] == 8080  # inherited from aci-web
    out = run(["actool", "-debug", "validate", str(built.manifest_json)], check=False)
    assert out.returncode == 0 and "valid PodManifest" in out.output, out.output


def test_pod_attributes_rank_between_images_and_app_folders(built: PodBuild, options: BuildOptions) -> None:
    order = (built.app("server").result.workspace.layer / "dgr" / "attributes" / ".dgr-order").read_text()
    assert order.split() == ["aci-web/web.yml", "pod/pod.yml", "pod-pair-server/server.yml"]
    with start_test_pod(built, options) as pod:
        # pod beats the image's default; the app folder's override beats the pod
        assert pod["server"].read_file("/srv/index.html").strip() == "pod app-override image"
        assert pod["client"].read_file("/srv/index.html").strip() == "pod pod image"
        bats = pod.tester.run_bats("pair.bats")
        assert [r.status for r in bats.results] == ["ok"], bats.output


def test_environment_override_beats_every_attribute_file(built: PodBuild, options: BuildOptions) -> None:
    with start_pod(built, options, override=json.dumps({"other": "env"})) as pod:
        page = wait_for(lambda: read(pod["server"], "/srv/index.html"))
        assert page == "pod env image"


def test_apps_share_one_network_namespace_and_leave_nothing(built: PodBuild, options: BuildOptions) -> None:
    pod = start_pod(built, options)
    try:
        got = wait_for(lambda: read(pod["client"], "/srv/copy/got.html"))
        assert got == "pod app-override image"  # the server's page, fetched over 127.0.0.1
        inodes = {os.stat(f"/proc/{c.init_pid()}/ns/net").st_ino for c in pod.apps.values()}
        assert len(inodes) == 1 and inodes != {os.stat("/proc/self/ns/net").st_ino}
        (inode,) = inodes
        state = pod.state
    finally:
        pod.stop()
    assert wait_for(lambda: not netns_holders(inode), 10), netns_holders(inode)
    assert not state.exists()


def test_dgr_test_runs_the_pod_items(repo: Path, built: PodBuild) -> None:
    done = subprocess.run(
        [
            str(DGR),
            "-H",
            str(repo / ".home"),
            "-W",
            str(repo / "pod-pair"),
            "test",
            "--",
            "-p",
            "no:cacheprovider",
            "-v",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for item in (
        "::build PASSED",
        "::templates[server] PASSED",
        "::templates[client] PASSED",
        "pair.bats::the client fetched",
        "test_pair.py::test_apps_share_loopback PASSED",
    ):
        assert item in done.stdout, done.stdout
    assert "5 passed" in done.stdout


def test_sigkill_of_dgr_run_leaves_no_process_or_namespace(
    repo: Path, built: PodBuild, tmp_path: Path
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [str(DGR), "-H", str(repo / ".home"), "-W", str(repo / "pod-pair"), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:

        def served() -> int | None:
            for child in child_pids(proc.pid):
                for inner in child_pids(child):
                    probe = subprocess.run(
                        [
                            "nsenter",
                            f"--net=/proc/{inner}/ns/net",
                            "busybox",
                            "wget",
                            "-q",
                            "-O",
                            "-",
                            "http://127.0.0.1:8081/got.html",
                        ],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if probe.stdout.strip() == "pod app-override image":
                        return os.stat(f"/proc/{inner}/ns/net").st_ino
            return None

        inode = wait_for(served)
        assert inode, "the pod never served the client's copy"
        descendants = _descendants(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert wait_for(lambda: not netns_holders(inode), 10), netns_holders(inode)
    assert wait_for(lambda: not [p for p in descendants if os.path.exists(f"/proc/{p}")], 10)


def test_kube_export_runs_under_podman(built: PodBuild, tmp_path: Path) -> None:
    kube = built.kube_yaml.read_text()
    assert "kind: Pod" in kube and "localhost/example.com/pod-pair-client:1" in kube
    with Podman(tmp_path / "podman") as podman:
        for app in built.apps:
            podman.load_oci(app.result.workspace.oci, app.result.name.version, name=app.result.name.name)
        podman.kube_play(built.kube_yaml)

        def copied() -> str:
            out = podman.podman("exec", "pod-pair-client", BB, "cat", "/srv/copy/got.html", check=False)
            return out.output.strip() if out.returncode == 0 else ""

        assert wait_for(copied) == "pod app-override image"
        # the server is the client's localhost too, from podman's side as well
        page = podman.podman(
            "exec", "pod-pair-client", BB, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"
        )
        assert page.output.strip() == "pod app-override image"
        own = podman.podman("exec", "pod-pair-client", BB, "cat", "/srv/index.html").output.strip()
        assert own == "pod pod image"  # the client's own page: no app folder, no override


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = child_pids(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(child_pids(child))
    return found


@pytest.fixture(autouse=True)
def _no_stray_state(tmp_path: Path) -> Iterator[None]:
    yield
    assert not list(tmp_path.glob("dgr-pod-*/*/rootfs/*")), "a pod's root file system is still mounted"
