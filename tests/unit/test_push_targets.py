"""The push section of config.yml, auth files, OCI references and the skopeo command line."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from dgr.config import Config
from dgr.names import ImageName
from dgr.push import NetworkError, Pushed, PushError, push_targets
from dgr.push.oci import repository, skopeo_arguments, tag, tls_verify
from dgr.push.targets import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Credentials,
    auth_file_json,
    containers_auth_file,
    credentials_from_auth_file,
    with_retries,
)


def cfg(tmp_path: Path, push: Any, insecure: tuple[str, ...] = ()) -> Config:
    return Config(home=tmp_path, insecure_options=insecure, raw={"push": push})


def test_targets_of_both_types(tmp_path: Path) -> None:
    oci, appc = push_targets(
        cfg(
            tmp_path,
            [
                {
                    "type": "oci",
                    "registry": "Registry.example.com:5000",
                    "namespace": "/team/",
                    "authFile": "a.json",
                },
                {
                    "type": "appc",
                    "url": "https://aci.example.com/",
                    "username": "u",
                    "password": "p",
                    "domains": ["Example.com"],
                },
            ],
        )
    )
    assert (oci.registry, oci.namespace, oci.auth_file) == (
        "registry.example.com:5000",
        "team",
        tmp_path / "a.json",
    )
    assert (appc.url, appc.credentials, appc.domains) == (
        "https://aci.example.com",
        Credentials("u", "p"),
        ("example.com",),
    )
    assert appc.applies_to("example.com") and not appc.applies_to("other.org") and oci.applies_to("x")


def test_one_mapping_is_one_target(tmp_path: Path) -> None:
    (target,) = push_targets(cfg(tmp_path, {"type": "appc"}))
    assert target.url == "" and target.describe() == "acserver (ac-push-discovery)"


@pytest.mark.parametrize(
    "push, message",
    [
        ([{"type": "docker"}], "type must be oci or appc"),
        ([{"type": "oci", "registry": "r", "token": "x"}], "unknown key 'token' in push[0]"),
        ([{"type": "oci", "registry": "https://r"}], "must be HOST[:PORT]"),
        ([{"type": "oci", "registry": "r", "username": "u"}], "username and password go together"),
        ([{"type": "appc", "url": "ftp://x"}], "http:// or https://"),
        ([{"type": "appc", "username": "u", "password": "p", "authFile": "f"}], "not both"),
        ("oci", "push must be a list"),
    ],
)
def test_bad_push_sections(tmp_path: Path, push: Any, message: str) -> None:
    with pytest.raises(PushError, match=message.replace("[", r"\[").replace("]", r"\]")):
        push_targets(cfg(tmp_path, push))


def test_password_never_in_repr() -> None:
    assert "s3cret" not in repr(Credentials("alice", "s3cret"))


def test_auth_file_entries(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://reg.example.com:5000/v1/": {"auth": base64.b64encode(b"alice:pa:ss").decode()},
                    "other.example.com": {"username": "bob", "password": "pw"},
                }
            }
        )
    )
    assert credentials_from_auth_file(path, "reg.example.com:5000") == Credentials("alice", "pa:ss")
    assert credentials_from_auth_file(path, "other.example.com") == Credentials("bob", "pw")
    assert credentials_from_auth_file(path, "nowhere") is None
    written = tmp_path / "written.json"
    written.write_text(auth_file_json("h:1", Credentials("u", "p")))
    assert credentials_from_auth_file(written, "h:1") == Credentials("u", "p")


def test_bad_auth_file(tmp_path: Path) -> None:
    with pytest.raises(PushError, match="does not exist"):
        credentials_from_auth_file(tmp_path / "missing.json", "h")
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(PushError, match='no "auths"'):
        credentials_from_auth_file(tmp_path / "a.json", "h")


def test_oci_reference(tmp_path: Path) -> None:
    with_ns, bare = push_targets(
        cfg(
            tmp_path,
            [{"type": "oci", "registry": "r:5000", "namespace": "ns"}, {"type": "oci", "registry": "r"}],
        )
    )
    name = ImageName("aci.example.com/group/app", "1.0-2")
    assert f"{repository(name, with_ns)}:{tag(name)}" == "r:5000/ns/group/app:1.0-2"
    assert repository(name, bare) == "r/group/app"
    assert tag(ImageName("a.com/b")) == "latest"
    assert tag(ImageName("a.com/b", "1.22.1-9+deb12u9")) == "1.22.1-9_deb12u9"
    with pytest.raises(PushError, match="not a valid OCI repository path component"):
        repository(ImageName("a.com/odd~name"), bare)


def test_tls_is_verified_unless_the_host_opts_out(tmp_path: Path) -> None:
    def verify(registry: str, insecure: tuple[str, ...]) -> bool:
        config = cfg(tmp_path, [{"type": "oci", "registry": registry}], insecure)
        return tls_verify(push_targets(config)[0], config)

    assert verify("r:5000", ())
    assert not verify("r:5000", ("tls:r:5000",))
    assert not verify("r:5000", ("http:r",))
    assert verify("r:5000", ("tls:other",))
    assert verify("r:5000", ("tls:r:443",))


def test_skopeo_arguments_hold_no_secret(tmp_path: Path) -> None:
    args = skopeo_arguments(
        tmp_path / "oci",
        "1",
        "r/app:1",
        verify=True,
        auth_file=tmp_path / "auth.json",
        policy=tmp_path / "p.json",
        digest_file=tmp_path / "d",
    )
    assert "--dest-authfile" in args and "--dest-tls-verify=true" in args
    assert not any("creds" in a for a in args)
    anonymous = skopeo_arguments(
        tmp_path / "oci",
        "1",
        "r/app:1",
        verify=False,
        auth_file=None,
        policy=tmp_path / "p.json",
        digest_file=tmp_path / "d",
    )
    assert "--dest-no-creds" in anonymous and "--dest-tls-verify=false" in anonymous


def test_timeout_and_retries(tmp_path: Path) -> None:
    oci, appc = push_targets(
        cfg(tmp_path, [{"type": "oci", "registry": "r", "timeout": 5, "retries": 0}, {"type": "appc"}])
    )
    assert (oci.step_timeout, oci.retries) == (5.0, 0)
    assert (appc.step_timeout, appc.retries) == (DEFAULT_TIMEOUT["appc"], DEFAULT_RETRIES)
    for key, value, message in (
        ("timeout", "soon", "timeout must be a number of seconds"),
        ("timeout", -1, "timeout must be a number of seconds"),
        ("retries", 1.5, "retries must be a whole number"),
        ("retries", True, "retries must be a whole number"),
    ):
        with pytest.raises(PushError, match=message):
            push_targets(cfg(tmp_path, [{"type": "appc", key: value}]))


def test_network_failures_are_tried_again_with_a_growing_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    (target,) = push_targets(cfg(Path("/nowhere"), {"type": "appc", "retries": 2}))
    slept: list[float] = []
    monkeypatch.setattr("dgr.push.targets.time.sleep", slept.append)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise NetworkError("down")
        return "pushed"

    assert with_retries(flaky, target, "push") == "pushed"
    assert slept == [1.0, 2.0]

    def down() -> str:
        raise NetworkError("still down")

    with pytest.raises(NetworkError, match=r"still down \(after 3 attempts\)"):
        with_retries(down, target, "push")

    def refused() -> str:
        calls.append(1)
        raise PushError("access refused")

    calls.clear()
    with pytest.raises(PushError, match="access refused"):
        with_retries(refused, target, "push")
    assert len(calls) == 1  # not a network failure: no second try


def test_the_containers_auth_file_is_found_as_podman_finds_it(tmp_path: Path) -> None:
    home, runtime = tmp_path / "home", tmp_path / "run"
    assert containers_auth_file({"HOME": str(home)}) is None
    docker = home / ".docker/config.json"
    docker.parent.mkdir(parents=True)
    docker.write_text("{}")
    assert containers_auth_file({"HOME": str(home)}) == docker
    podman = home / ".config/containers/auth.json"
    podman.parent.mkdir(parents=True)
    podman.write_text("{}")
    assert containers_auth_file({"HOME": str(home)}) == podman
    login = runtime / "containers/auth.json"
    login.parent.mkdir(parents=True)
    login.write_text("{}")
    assert containers_auth_file({"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}) == login
    assert containers_auth_file({"HOME": str(home), "REGISTRY_AUTH_FILE": str(docker)}) == docker
    with pytest.raises(PushError, match="REGISTRY_AUTH_FILE=.* does not exist"):
        containers_auth_file({"HOME": str(home), "REGISTRY_AUTH_FILE": str(tmp_path / "missing.json")})


def test_pushed_as_json(tmp_path: Path) -> None:
    oci, appc = push_targets(cfg(tmp_path, [{"type": "oci", "registry": "r"}, {"type": "appc"}]))
    assert Pushed(oci, "r/app:1", "sha256:x").document() == {
        "target": "push[0]",
        "type": "oci",
        "reference": "r/app:1",
        "digest": "sha256:x",
    }
    assert Pushed(appc, "http://a/startupload").document() == {
        "target": "push[1]",
        "type": "appc",
        "url": "http://a/startupload",
    }
