"""dgr killed (SIGKILL) or stopped (SIGTERM, SIGINT) at every stage: build script, packaging,
extraction of a fetched image, push, test, run.

After each: no process and no mount left, the previous outputs intact, no half-written output;
what the killed run left (temporary files in the target, the store and the cache, session and
container folders in TMPDIR) is removed by the next run that touches it, which succeeds; a
stopped run exits 143 (SIGTERM) or 130 (SIGINT) and leaves nothing at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import BASE_MANIFEST, Env, dgr, dgr_process, outputs
from tests.support.discovery import DiscoveryServer, aci, discovery_server, entry, image_path
from tests.support.podman import mounts_under

pytestmark = pytest.mark.integration

# The sleeps' argument identifies this test's processes (xdist runs tests side by side).
MARK = str(400_000 + os.getpid() % 100_000)
SH = "#!/dgr/bin/busybox sh\n"


def processes_of(env: Env) -> list[str]:
    """Processes still running for this case: sleeping MARK, or naming its folder."""
    found = []
    for entry_ in os.listdir("/proc"):
        if not entry_.isdigit() or int(entry_) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry_}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if MARK.encode() in argv or any(str(env.root).encode() in arg for arg in argv):
            found.append(f"{entry_}: {b' '.join(argv)[:200]!r}")
    return found


def sleeping() -> bool:
    """Whether a `sleep MARK` runs (a build script's, a test's, a container's app)."""
    for pid in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv[0].endswith(b"sleep")
            and argv[1:2] == [MARK.encode()]
            or argv[1:3] == [b"sleep", MARK.encode()]
        ):
            return True
    return False


def wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"dgr ended (code {proc.returncode}) before {what}:\n{out}")
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.005)


def stop(proc: subprocess.Popen[bytes], sig: int) -> tuple[int, str]:
    os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out.decode(errors="replace")


def nothing_left_running(env: Env) -> None:
    deadline = time.monotonic() + 10  # the kernel kills the sandboxes' processes: give it a moment
    while processes_of(env) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(env) == []
    assert mounts_under(env.root) == []


def start(env: Env, *args: str) -> subprocess.Popen[bytes]:
    return dgr_process(env, args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def own_cache(env: Env) -> Path:
    """A cache of this test's own (what a killed fetch left there is this test's to find)."""
    cache = env.root / "cache"
    env.extra["base_config"] = f"cachePath: {cache}\nstorePath: {env.store}\n"
    env.config("")
    return cache


# --- build script, packaging --------------------------------------------------------------------

SLOW_SCRIPT = {
    "aci-manifest.yml": BASE_MANIFEST
    + "build:\n  mountPoints: [{from: signal, to: /signal, optional: true}]\n",
    "runlevels/build/10.slow.sh": SH + f"touch /signal/started\n/dgr/bin/busybox sleep {MARK}\n",
}


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [
        (signal.SIGKILL, -9, ""),
        (signal.SIGTERM, 143, "error terminated"),
        (signal.SIGINT, 130, "error interrupted"),
    ],
)
def test_signal_during_a_build_script(
    fault_env: Env, capfd: pytest.CaptureFixture[str], sig: int, code: int, said: str
) -> None:
    env = fault_env
    before = outputs(env)
    env.write(SLOW_SCRIPT)
    proc = start(env, "build")
    wait_until(lambda: (env.project / "signal" / "started").exists(), proc, "the build script")
    returned, out = stop(proc, sig)
    assert returned == code, out
    if said:
        assert said in out and "Traceback" not in out
        assert not (env.target / "work").exists()
    nothing_left_running(env)
    assert outputs(env) == before
    env.remove(SLOW_SCRIPT)
    (env.project / "aci-manifest.yml").write_text(BASE_MANIFEST)
    assert dgr(env, ["build"], capfd).code == 0
    assert not (env.target / "work").exists()


def test_kill_during_packaging(fault_env: Env, capfd: pytest.CaptureFixture[str]) -> None:
    env = fault_env
    before = outputs(env)
    env.write({"files/big": os.urandom(48 << 20)})  # packaging takes a moment
    proc = start(env, "build")

    def packaging() -> bool:
        return any(p.name.startswith((".image.aci.", ".oci.")) for p in env.target.iterdir())

    wait_until(packaging, proc, "packaging")
    stop(proc, signal.SIGKILL)
    nothing_left_running(env)
    assert outputs(env) == before, "a killed packaging changed the previous outputs"
    half = [p.name for p in env.target.iterdir() if p.name.startswith((".image.aci.", ".oci."))]
    assert half, "the kill came after packaging: nothing to check"
    env.remove({"files/big": ""})
    assert dgr(env, ["build"], capfd).code == 0
    assert [p.name for p in env.target.iterdir() if p.name.startswith(".")] == [".lock"]


# --- extraction of a fetched image ------------------------------------------------------------


@pytest.fixture
def server(fault_env: Env) -> Iterator[DiscoveryServer]:
    with discovery_server() as found:
        yield found


def test_kill_during_extraction(
    fault_env: Env, server: DiscoveryServer, capfd: pytest.CaptureFixture[str]
) -> None:
    env = fault_env
    cache = own_cache(env)
    env.config(server.config())
    big = [entry(f"rootfs/data/{i}", os.urandom(4 << 20)) for i in range(12)]
    server.publish("example.test/big", "1", aci("example.test/big", "1", big))
    env.write({"aci-manifest.yml": BASE_MANIFEST + "aci:\n  dependencies: [example.test/big:1]\n"})
    proc = start(env, "build")
    images = env.store / "images"
    wait_until(
        lambda: images.is_dir() and any(p.name.startswith(".add-") for p in images.iterdir()),
        proc,
        "extraction",
    )
    stop(proc, signal.SIGKILL)
    nothing_left_running(env)
    assert [p.name for p in images.iterdir() if p.name.startswith(".add-")], (
        "nothing half-extracted to check"
    )
    assert [p.name for p in (cache / "downloads").iterdir()], "no download left to check"
    assert dgr(env, ["build"], capfd).code == 0
    assert [p.name for p in images.iterdir() if not p.name.startswith("sha512-")] == []
    assert list((cache / "downloads").iterdir()) == []


def test_two_builds_fetch_a_dependency_once(fault_env: Env, server: DiscoveryServer, tmp_path: Path) -> None:
    env = fault_env
    env.config(server.config())
    server.delay = 1.0  # both builds ask for it while the first download runs
    server.publish("example.test/shared", "1", aci("example.test/shared", "1"))
    other = tmp_path / "aci-other"
    other.mkdir()
    depends = "aci:\n  dependencies: [example.test/shared:1]\n"
    (other / "aci-manifest.yml").write_text(f"name: example.com/aci-other:1\n{depends}")
    env.write({"aci-manifest.yml": BASE_MANIFEST + depends})
    first = start(env, "build")
    second = dgr_process(env, ["-W", str(other), "build"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outs = []
    for proc in (first, second):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()
        outs.append(out.decode())
    assert server.gets[image_path("example.test/shared", "1")] == 1, "downloaded twice"
    assert any("example.test/shared:1 was fetched meanwhile" in out for out in outs)
    assert len(list((env.store / "images").glob("sha512-*"))) == 1


# --- push -------------------------------------------------------------------------------------


class StallingRegistry:
    """Answers `GET /v2/` asking for basic auth, then stalls every other request: a push that
    has its credentials and never finishes."""

    def __init__(self) -> None:
        import socket
        import threading

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.authorized = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(conn)
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: object) -> None:
        import socket

        assert isinstance(conn, socket.socket)
        try:
            while True:
                request = conn.recv(65536)
                if not request:
                    return
                if b"Authorization: Basic" in request:
                    self.authorized.set()
                    continue  # never answered
                if not request[:1].isalpha():  # a TLS handshake: answered as HTTP servers do
                    conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                    return
                if request.startswith(b"GET /v2/ "):
                    conn.sendall(
                        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r"\r\n'
                        b"Docker-Distribution-API-Version: registry/2.0\r\nContent-Length: 0\r\n\r\n"
                    )
        except OSError:
            return

    def close(self) -> None:
        self.listener.close()
        for conn in self.sockets:
            conn.close()


PASSWORD = "Never-On-Disk-7"


def files_holding(root: Path, secret: str) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                if not os.path.islink(path) and secret.encode() in Path(path).read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, -9), (signal.SIGTERM, 143)])
def test_signal_during_push_leaves_no_credentials(
    fault_env: Env, capfd: pytest.CaptureFixture[str], sig: int, code: int
) -> None:
    env = fault_env
    registry = StallingRegistry()
    try:
        target = f"push: [{{type: oci, registry: '{registry.host}', username: u, password: {PASSWORD}}}]\n"
        env.config(target + "insecureOptions: [http]\n")
        proc = start(env, "push")
        wait_until(registry.authorized.is_set, proc, "the push sending its credentials")
        returned, out = stop(proc, sig)
        assert returned == code, out
        assert PASSWORD not in out
    finally:
        registry.close()
    nothing_left_running(env)
    assert files_holding(env.root, PASSWORD) == [f"{env.home}/config.yml"]


# --- test, run --------------------------------------------------------------------------------

SLOW_TEST = {"tests/slow.bats": f'@test "slow" {{\n  touch /dgr/tests-started\n  sleep {MARK}\n}}\n'}


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, -9), (signal.SIGTERM, 143)])
def test_signal_during_dgr_test(
    fault_env: Env, capfd: pytest.CaptureFixture[str], sig: int, code: int
) -> None:
    env = fault_env
    env.write(SLOW_TEST)
    proc = start(env, "test")
    wait_until(sleeping, proc, "the bats test")
    returned, out = stop(proc, sig)
    assert returned == code, out
    if sig == signal.SIGTERM:
        assert "error terminated" in out and "failed" not in out.splitlines()[-1]
        assert list((env.target / "tests").glob("run-*")) == []
        assert list(env.tmp.iterdir()) == []
    nothing_left_running(env)
    env.write({"tests/slow.bats": '@test "quick" {\n  true\n}\n'})
    assert dgr(env, ["test"], capfd).code == 0
    assert list((env.target / "tests").glob("run-*")) == []
    assert list(env.tmp.iterdir()) == [], "the killed session's folder is still there"


def test_kill_during_dgr_run(fault_env: Env, capfd: pytest.CaptureFixture[str]) -> None:
    env = fault_env
    proc = start(env, "run", "--", "/dgr/bin/busybox", "sleep", MARK)
    wait_until(sleeping, proc, "the container's app")
    stop(proc, signal.SIGKILL)
    nothing_left_running(env)
    assert [p.name for p in env.tmp.iterdir()], "no container folder left to check"
    assert dgr(env, ["run", "--", "/dgr/bin/busybox", "true"], capfd).code == 0
    assert list(env.tmp.iterdir()) == []


def test_a_running_dgr_keeps_its_files(fault_env: Env, capfd: pytest.CaptureFixture[str]) -> None:
    """The next run removes what dead processes left, never what a live one uses."""
    env = fault_env
    proc = start(env, "run", "--", "/dgr/bin/busybox", "sleep", MARK)
    wait_until(sleeping, proc, "the container's app")
    (running,) = list(env.tmp.iterdir())
    assert dgr(env, ["run", "--", "/dgr/bin/busybox", "true"], capfd).code == 0  # cleans TMPDIR first
    assert running.is_dir() and sleeping(), "a live dgr's container folder was removed"
    returned, out = stop(proc, signal.SIGTERM)
    assert returned == 143, out
    nothing_left_running(env)
    assert list(env.tmp.iterdir()) == []
