"""`dgr push` for real: skopeo to docker-registry (anonymous, basic auth, plain HTTP opt-out),
the acserver protocol to the test peer (tests/support/acserver.py) with a gpg signature,
`dgr push -t`, and the plugin's `--dgr-push` under xdist."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgr.cli import main
from dgr.init import init_project
from dgr.push.targets import Credentials, auth_file_json
from tests.support.acserver import AcServer
from tests.support.gpg import Gpg, throwaway_gpg
from tests.support.registry import Registry, running_registry
from tests.support.tokenserver import TokenServer

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path / "registry") as found:
        yield found


def project(tmp_path: Path, name: str = "aci.example.com/aci-pushed:1", folder: str = "aci-pushed") -> Path:
    path = tmp_path / folder
    init_project(path)
    (path / "aci-manifest.yml").write_text(f"name: {name}\n")
    return path


def home(tmp_path: Path, cache_dir: Path, text: str) -> Path:
    path = tmp_path / "dgr-home"
    path.mkdir(exist_ok=True)
    (path / "config.yml").write_text(f"cachePath: {cache_dir}\nstorePath: {tmp_path / 'store'}\n{text}")
    return path


def oci_target(registry: Registry, extra: str = "", insecure: bool = True) -> str:
    text = f"push:\n  - type: oci\n    registry: {registry.host}\n    namespace: test\n{extra}"
    return text + (f"insecureOptions: ['http:{registry.host}']\n" if insecure else "")


def layout_digest(layout: Path) -> str:
    digest: str = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    return digest


def remote_digest(reference: str, *extra: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{reference}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    digest: str = json.loads(out)["Digest"]
    return digest


def test_push_to_an_anonymous_registry(
    tmp_path: Path, cache_dir: Path, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = project(tmp_path)
    cfg = home(tmp_path, cache_dir, oci_target(registry))
    assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 0
    out, err = capsys.readouterr()
    reference = f"{registry.host}/test/aci-pushed:1"
    local = layout_digest(proj / "target" / "oci")
    assert out.split() == [reference, local]
    assert f"Pushing aci.example.com/aci-pushed:1 to {reference}" in err
    assert remote_digest(reference) == local
    # pulled back, the image is the same manifest, config and layers
    pulled = tmp_path / "pulled"
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{reference}", f"oci:{pulled}:1"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert layout_digest(pulled) == local


def test_basic_auth_right_and_wrong_password(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = project(tmp_path)
    with running_registry(tmp_path / "registry", {"alice": "Right-pw-42"}) as registry:
        creds = "    username: alice\n    password: {}\n"
        bad = home(tmp_path, cache_dir, oci_target(registry, creds.format("Wrong-pw-17")))
        assert main(["-H", str(bad), "-L", "trace", "-W", str(proj), "push"]) == 1
        out, err = capsys.readouterr()
        assert f"{registry.host} refused access with the configured credentials" in err
        assert "check username/password or authFile of push[0]" in err
        assert "Wrong-pw-17" not in out + err
        assert registry.catalog(("alice", "Right-pw-42")) == []

        good = home(tmp_path, cache_dir, oci_target(registry, creds.format("Right-pw-42")))
        assert main(["-H", str(good), "-L", "trace", "-W", str(proj), "push"]) == 0
        out, err = capsys.readouterr()
        assert "Right-pw-42" not in out + err
        assert "skopeo" in err and "--dest-authfile" in err  # the command line is logged, without it
        reference = f"{registry.host}/test/aci-pushed:1"
        local = layout_digest(proj / "target" / "oci")
        assert remote_digest(reference, "--creds", "alice:Right-pw-42") == local


def test_plain_http_needs_the_insecure_opt_out(
    tmp_path: Path, cache_dir: Path, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = project(tmp_path)
    cfg = home(tmp_path, cache_dir, oci_target(registry, insecure=False))
    assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 1
    err = capsys.readouterr().err
    assert f"{registry.host} speaks plain HTTP, not HTTPS" in err
    assert f"add http:{registry.host} to insecureOptions" in err
    assert registry.catalog() == []


@pytest.fixture
def gpg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gpg]:
    with throwaway_gpg(tmp_path / "gnupg") as g:
        monkeypatch.setenv("GNUPGHOME", str(g.home))
        yield g


def test_appc_push_with_signature_through_discovery(tmp_path: Path, cache_dir: Path, gpg: Gpg) -> None:
    server = AcServer(tmp_path / "acis", username="pusher", password="Pw-appc-9", unsigned=False).start()
    try:
        proj = project(tmp_path, "acserver.test/aci-pushed:1.0")
        cfg = home(
            tmp_path,
            cache_dir,
            (
                "push:\n  - type: appc\n    username: pusher\n    password: Pw-appc-9\n"
                f"discovery: {{hosts: {{acserver.test: '127.0.0.1:{server.port}'}}}}\n"
                "insecureOptions: ['http:127.0.0.1']\n"
                f"sign:\n  - keyring: {gpg.keyring}\n"
            ),
        )
        assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 0
        aci = proj / "target" / "image.aci"
        stored = server.stored("acserver.test/aci-pushed", "1.0")
        assert stored.read_bytes() == aci.read_bytes()
        signature = (proj / "target" / "image.aci.asc").read_bytes()
        assert stored.with_name(stored.name + ".asc").read_bytes() == signature
        subprocess.run(
            ["gpg", "--batch", "--verify", str(stored) + ".asc", str(stored)],
            env=gpg.env,
            check=True,
            capture_output=True,
        )
        assert server.completions == [{"success": True}]
    finally:
        server.stop()


FAILING_BATS = '#!/usr/bin/env bats\n\n@test "fails" {\n  [ 1 = 2 ]\n}\n'


def test_push_with_tests_refuses_when_a_test_fails(
    tmp_path: Path, cache_dir: Path, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = project(tmp_path)
    (proj / "tests" / "failing.bats").write_text(FAILING_BATS)
    cfg = home(tmp_path, cache_dir, oci_target(registry))
    assert main(["-H", str(cfg), "-W", str(proj), "push", "-t"]) == 1
    assert "tests failed: nothing pushed" in capsys.readouterr().err
    assert registry.catalog() == []


def test_dgr_push_option_pushes_passing_images_once(
    pytester: pytest.Pytester, tmp_path: Path, cache_dir: Path, registry: Registry
) -> None:
    good = project(pytester.path, "aci.example.com/aci-good:1", "aci-good")
    bad = project(pytester.path, "aci.example.com/aci-bad:1", "aci-bad")
    (bad / "tests" / "failing.bats").write_text(FAILING_BATS)
    cfg = home(tmp_path, cache_dir, oci_target(registry))
    result = pytester.run(
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--dgr-home={cfg}",
        "--dgr-push",
        "-n",
        "2",
        str(good),
        str(bad),
        timeout=600,
    )
    assert result.ret == 1, result.stdout.str()
    assert registry.catalog() == ["test/aci-good"]
    assert len(registry.requests_matching("PUT", "/v2/test/aci-good/manifests/")) == 1
    result.stdout.fnmatch_lines(
        [
            "*dgr push*",
            f"*not pushed (tests failed): {bad}*",
            f"*pushed aci.example.com/aci-good:1 to {registry.host}/test/aci-good:1 sha256:*",
        ]
    )


def test_bearer_token_auth(tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = TokenServer(tmp_path / "tokens", "bob", "Token-pw-5").start()
    try:
        with running_registry(tmp_path / "registry", auth=tokens.registry_auth()) as registry:
            proj = project(tmp_path)
            creds = "    username: bob\n    password: Token-pw-5\n"
            cfg = home(tmp_path, cache_dir, oci_target(registry, creds))
            assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 0
            assert "Token-pw-5" not in "".join(capsys.readouterr())
            assert "repository:test/aci-pushed:pull,push" in tokens.issued
            reference = f"{registry.host}/test/aci-pushed:1"
            local = layout_digest(proj / "target" / "oci")
            assert remote_digest(reference, "--creds", "bob:Token-pw-5") == local
    finally:
        tokens.stop()


def test_push_of_a_pod_pushes_every_app(
    tmp_path: Path, cache_dir: Path, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path, name="example.com/aci-base:1", folder="aci-base")
    pod = tmp_path / "pod-two"
    pod.mkdir()
    (pod / "pod-manifest.yml").write_text(
        "name: example.com/pod-two:1\n"
        "pod:\n  apps:\n"
        "    - name: one\n      dependencies: [example.com/aci-base:1]\n"
        "    - name: two\n      dependencies: [example.com/aci-base:1]\n"
    )
    cfg = home(tmp_path, cache_dir, oci_target(registry))
    assert main(["-H", str(cfg), "-W", str(pod), "push"]) == 0
    out = capsys.readouterr().out.split()
    references = [f"{registry.host}/test/pod-two-one:1", f"{registry.host}/test/pod-two-two:1"]
    assert out[0::2] == references
    for reference, digest in zip(references, out[1::2], strict=True):
        assert remote_digest(reference) == digest


# --- issue 11: --json, the containers auth file, retries and timeouts ----------------------


def test_push_json(
    tmp_path: Path, cache_dir: Path, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = project(tmp_path)
    cfg = home(tmp_path, cache_dir, oci_target(registry))
    assert main(["-H", str(cfg), "-W", str(proj), "push", "--json"]) == 0
    (image,) = json.loads(capsys.readouterr().out)["images"]
    assert image["reference"] == "aci.example.com/aci-pushed:1"
    assert image["pushed"] == [
        {
            "target": "push[0]",
            "type": "oci",
            "reference": f"{registry.host}/test/aci-pushed:1",
            "digest": layout_digest(proj / "target" / "oci"),
        }
    ]


def login_file(path: Path, host: str, user: str, password: str) -> Path:
    """An auth.json as `podman login` writes it."""
    path.write_text(auth_file_json(host, Credentials(user, password)))
    return path


def test_credentials_from_podman_login(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = project(tmp_path)
    with running_registry(tmp_path / "registry", {"carol": "Login-pw-3"}) as registry:
        cfg = home(tmp_path, cache_dir, oci_target(registry))  # no credentials in config.yml
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "missing.json"))
        assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 1
        assert "REGISTRY_AUTH_FILE=" in capsys.readouterr().err
        monkeypatch.setenv(
            "REGISTRY_AUTH_FILE", str(login_file(tmp_path / "auth.json", registry.host, "carol", "x"))
        )
        assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 1
        assert "refused access" in capsys.readouterr().err
        login_file(tmp_path / "auth.json", registry.host, "carol", "Login-pw-3")
        assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 0
        assert "Login-pw-3" not in "".join(capsys.readouterr())
        reference = f"{registry.host}/test/aci-pushed:1"
        assert remote_digest(reference, "--creds", "carol:Login-pw-3") == layout_digest(proj / "target/oci")


def test_appc_credentials_from_podman_login(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = AcServer(tmp_path / "acis", username="dave", password="Appc-login-1").start()
    try:
        proj = project(tmp_path, "acserver.test/aci-pushed:1.0")
        cfg = home(
            tmp_path, cache_dir, f"push:\n  - type: appc\n    url: {server.url}\ninsecureOptions: [http]\n"
        )
        host = f"127.0.0.1:{server.port}"
        monkeypatch.setenv(
            "REGISTRY_AUTH_FILE", str(login_file(tmp_path / "auth.json", host, "dave", "Appc-login-1"))
        )
        assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 0
        assert (
            server.stored("acserver.test/aci-pushed", "1.0").read_bytes()
            == (proj / "target/image.aci").read_bytes()
        )
    finally:
        server.stop()


class FlakyProxy:
    """A TCP proxy on 127.0.0.1 to `upstream` that answers the first `failures` plain HTTP
    connections with HTTP 503, as a registry behind a restarting load balancer does.
    (TLS attempts pass through: skopeo tries HTTPS first, then falls back to HTTP.)"""

    def __init__(self, upstream: str, failures: int) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.failures = failures
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            first = client.recv(65536)
            if self.failures and first[:1] != b"\x16":  # not a TLS handshake
                self.failures -= 1
                client.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                client.close()
                return
            server = socket.create_connection(self.upstream)
            self.sockets.append(server)
            server.sendall(first)
        except OSError:
            return
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        self._pump(client, server)

    @staticmethod
    def _pump(source: socket.socket, dest: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                dest.sendall(data)
            dest.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_a_push_is_tried_again_after_a_network_failure(
    tmp_path: Path, cache_dir: Path, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = FlakyProxy(registry.host, failures=2)  # the first: the answer check before skopeo runs
    try:
        proj = project(tmp_path)
        target = f"push:\n  - type: oci\n    registry: {proxy.host}\n    namespace: test\n    retries: 1\n"
        cfg = home(tmp_path, cache_dir, target + "insecureOptions: [http]\n")
        assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 0
        err = capsys.readouterr().err
        assert "trying again in 1s (1/1)" in err
        assert remote_digest(f"{registry.host}/test/aci-pushed:1") == layout_digest(proj / "target/oci")
    finally:
        proxy.close()


def test_an_appc_push_is_tried_again_after_a_server_error(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = AcServer(tmp_path / "acis").start()
    proxy = FlakyProxy(f"127.0.0.1:{server.port}", failures=1)
    try:
        proj = project(tmp_path, "acserver.test/aci-pushed:1.0")
        url = f"http://{proxy.host}"
        cfg = home(tmp_path, cache_dir, f"push:\n  - type: appc\n    url: {url}\ninsecureOptions: [http]\n")
        assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 0
        assert "HTTP 503" in capsys.readouterr().err
        assert server.stored("acserver.test/aci-pushed", "1.0").exists()
    finally:
        proxy.close()
        server.stop()


@pytest.mark.parametrize("kind", ["oci", "appc"])
def test_a_push_that_times_out_is_one_clear_error(
    kind: str, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    host = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        proj = project(tmp_path, "acserver.test/aci-pushed:1.0")
        where = f"registry: {host}" if kind == "oci" else f"url: http://{host}"
        target = f"push:\n  - type: {kind}\n    {where}\n    timeout: 1\n    retries: 1\n"
        cfg = home(tmp_path, cache_dir, target + "insecureOptions: [http]\n")
        started = time.monotonic()
        assert main(["-H", str(cfg), "-W", str(proj), "push"]) == 1
        assert time.monotonic() - started < 30
        err = capsys.readouterr().err
        assert "did not answer within 1s (after 2 attempts)" in err and "Traceback" not in err
    finally:
        silent.close()
