"""The appc push client against the test acserver (tests/support/acserver.py), over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dgr.aci import write_aci
from dgr.config import Config
from dgr.names import ImageName
from dgr.push import PushError, push_image, push_targets
from dgr.push.appc import push_appc
from tests.support.acserver import AcServer

NAME = ImageName("acserver.test/aci-unit", "1.2")
MANIFEST = {
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": NAME.name,
    "labels": [
        {"name": "version", "value": "1.2"},
        {"name": "os", "value": "linux"},
        {"name": "arch", "value": "amd64"},
    ],
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AcServer]:
    acserver = AcServer(tmp_path / "acis", username="pusher", password="s3cret-pw").start()
    yield acserver
    acserver.stop()


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Path]:
    rootfs = tmp_path / "layer"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hello").write_text("hello\n")
    aci = tmp_path / "target" / "image.aci"
    aci.parent.mkdir()
    write_aci(rootfs, MANIFEST, aci)
    signature = aci.with_name("image.aci.asc")
    signature.write_text("-----BEGIN PGP SIGNATURE-----\nnot checked by acserver\n")
    return aci, signature


AUTHED = {"type": "appc", "username": "pusher", "password": "s3cret-pw"}


def config(
    tmp_path: Path,
    target: dict[str, Any],
    *,
    insecure: tuple[str, ...] = ("http:127.0.0.1",),
    discovery: dict[str, Any] | None = None,
) -> Config:
    raw: dict[str, Any] = {"push": [target]}
    if discovery:
        raw["discovery"] = discovery
    return Config(home=tmp_path, insecure_options=insecure, raw=raw)


def target_of(cfg: Config) -> Any:
    return push_targets(cfg)[0]


def test_push_with_url_auth_and_signature(
    tmp_path: Path, server: AcServer, image: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    aci, sig = image
    cfg = config(tmp_path, AUTHED | {"url": server.url})
    caplog.set_level(5, logger="dgr")
    sent = push_appc(aci, sig, NAME, target_of(cfg), cfg)
    stored = server.stored(NAME.name, "1.2")
    assert stored.read_bytes() == aci.read_bytes()
    assert stored.with_name(stored.name + ".asc").read_bytes() == sig.read_bytes()
    assert sent.initiate_url == f"{server.url}/aci-unit-1.2-linux-amd64.aci/startupload"
    assert server.completions == [{"success": True}]
    assert [m for m, _ in server.requests] == ["POST", "PUT", "PUT", "PUT", "POST"]
    assert "s3cret-pw" not in caplog.text
    assert "Uploaded ACI" in caplog.text


def test_push_endpoint_from_discovery(tmp_path: Path, server: AcServer, image: tuple[Path, Path]) -> None:
    aci, _ = image
    cfg = config(
        tmp_path,
        {"type": "appc", "username": "pusher", "password": "s3cret-pw"},
        discovery={"hosts": {"acserver.test": f"127.0.0.1:{server.port}"}},
    )
    sent = push_appc(aci, None, NAME, target_of(cfg), cfg)
    assert sent.initiate_url == f"{server.url}/{NAME.name}-1.2-linux-amd64.aci/startupload"
    assert ("GET", "/?ac-discovery=1") in server.requests
    assert server.stored(NAME.name, "1.2").read_bytes() == aci.read_bytes()


def test_credentials_from_an_auth_file(tmp_path: Path, server: AcServer, image: tuple[Path, Path]) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(
        json.dumps({"auths": {f"127.0.0.1:{server.port}": {"username": "pusher", "password": "s3cret-pw"}}})
    )
    cfg = config(tmp_path, {"type": "appc", "url": server.url, "authFile": "auth.json"})
    push_appc(image[0], None, NAME, target_of(cfg), cfg)
    assert server.stored(NAME.name, "1.2").exists()


def test_wrong_password_is_refused_without_showing_it(
    tmp_path: Path, server: AcServer, image: tuple[Path, Path]
) -> None:
    cfg = config(tmp_path, {"type": "appc", "url": server.url, "username": "pusher", "password": "nope-pw"})
    with pytest.raises(PushError) as raised:
        push_appc(image[0], None, NAME, target_of(cfg), cfg)
    assert "refused user 'pusher' (HTTP 403)" in str(raised.value)
    assert "nope-pw" not in str(raised.value)


def test_no_credentials_gives_401_hint(tmp_path: Path, server: AcServer, image: tuple[Path, Path]) -> None:
    cfg = config(tmp_path, {"type": "appc", "url": server.url})
    with pytest.raises(PushError, match="asks for credentials"):
        push_appc(image[0], None, NAME, target_of(cfg), cfg)


def test_server_refusal_in_json_fails_the_push(
    tmp_path: Path, server: AcServer, image: tuple[Path, Path]
) -> None:
    server.unsigned = False  # the server wants a signature; HTTP 200 with success: false
    cfg = config(tmp_path, AUTHED | {"url": server.url})
    with pytest.raises(PushError, match="signature wasn't uploaded"):
        push_appc(image[0], None, NAME, target_of(cfg), cfg)
    assert not server.stored(NAME.name, "1.2").exists()


def test_failed_upload_is_aborted(
    tmp_path: Path, server: AcServer, image: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = server.start_upload

    def broken_aci_url() -> dict[str, Any]:
        answer = original()
        answer["upload_aci_url"] = f"{server.url}/aci/999"
        return answer

    monkeypatch.setattr(server, "start_upload", broken_aci_url)
    cfg = config(tmp_path, AUTHED | {"url": server.url})
    with pytest.raises(PushError, match="bad HTTP status 404"):
        push_appc(image[0], None, NAME, target_of(cfg), cfg)
    (abort,) = server.completions
    assert abort["success"] is False
    assert abort["reason"].startswith("error uploading ACI: ")


def test_plain_http_needs_the_opt_out(tmp_path: Path, server: AcServer, image: tuple[Path, Path]) -> None:
    cfg = config(tmp_path, {"type": "appc", "url": server.url}, insecure=())
    with pytest.raises(PushError) as raised:
        push_appc(image[0], None, NAME, target_of(cfg), cfg)
    assert f"http:127.0.0.1:{server.port}" in str(raised.value)
    assert server.requests == []


def test_push_image_needs_a_target(tmp_path: Path) -> None:
    with pytest.raises(PushError, match="no push target configured"):
        push_image(object(), Config(home=tmp_path))  # type: ignore[arg-type]
