"""`dgr sign` with a real gpg key; `dgr install` stores the signature with the image."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgr.cli import main
from dgr.init import init_project
from dgr.store import Store
from tests.support.gpg import Gpg, throwaway_gpg

pytestmark = pytest.mark.integration


@pytest.fixture
def gpg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gpg]:
    with throwaway_gpg(tmp_path / "gnupg") as g:
        monkeypatch.setenv("GNUPGHOME", str(g.home))
        yield g


def setup(tmp_path: Path, cache_dir: Path, sign: str) -> tuple[Path, Path]:
    home = tmp_path / "dgr-home"
    home.mkdir()
    (home / "config.yml").write_text(f"cachePath: {cache_dir}\nstorePath: {tmp_path / 'store'}\n{sign}")
    project = tmp_path / "aci-signed"
    init_project(project)
    return home, project


def test_sign_then_install_keeps_the_signature(tmp_path: Path, cache_dir: Path, gpg: Gpg) -> None:
    sign = f"sign:\n  - domains: [aci.example.com]\n    keyring: {gpg.keyring}\n"
    home, project = setup(tmp_path, cache_dir, sign)
    assert main(["-H", str(home), "-W", str(project), "sign"]) == 0
    aci = project / "target" / "image.aci"
    sig = project / "target" / "image.aci.asc"
    assert sig.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    subprocess.run(
        ["gpg", "--batch", "--verify", str(sig), str(aci)], env=gpg.env, check=True, capture_output=True
    )
    assert main(["-H", str(home), "-W", str(project), "install"]) == 0
    (stored,) = Store(tmp_path / "store").list()
    assert stored.signature is not None
    assert stored.signature.read_bytes() == sig.read_bytes()


def test_signing_with_a_key_the_keyring_refuses_fails(tmp_path: Path, cache_dir: Path, gpg: Gpg) -> None:
    with throwaway_gpg(tmp_path / "other") as other:
        sign = f"sign:\n  - keyring: {other.keyring}\n"
        home, project = setup(tmp_path, cache_dir, sign)
        assert main(["-H", str(home), "-W", str(project), "sign"]) == 1
    assert not (project / "target" / "image.aci.asc").exists()


def test_disabled_signing_makes_no_signature(tmp_path: Path, cache_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    home, project = setup(tmp_path, cache_dir, "sign:\n  - disabled: true\n")
    assert main(["-H", str(home), "-W", str(project), "sign"]) == 0
    assert not (project / "target" / "image.aci.asc").exists()
    assert "signing is disabled" in capsys.readouterr().err


def test_sign_on_a_pod_signs_every_app(tmp_path: Path, cache_dir: Path, gpg: Gpg) -> None:
    from dgr.config import load_config
    from dgr.options import BuildOptions
    from dgr.plan import plan_build_pod

    home, project = setup(tmp_path, cache_dir, f"sign:\n  - keyring: {gpg.keyring}\n")
    (project / "aci-manifest.yml").write_text("name: example.com/aci-base:1\n")
    pod = tmp_path / "pod-signed"
    pod.mkdir()
    (pod / "pod-manifest.yml").write_text(
        "name: example.com/pod-signed:1\npod:\n  apps:\n"
        "    - name: one\n      dependencies: [example.com/aci-base:1]\n"
        "    - name: two\n      dependencies: [example.com/aci-base:1]\n"
    )
    assert main(["-H", str(home), "-W", str(pod), "sign"]) == 0
    apps = plan_build_pod(pod, BuildOptions(config=load_config(home))).apps
    assert [a.name for a in apps] == ["one", "two"]
    for app in apps:
        aci = app.result.workspace.aci
        subprocess.run(
            ["gpg", "--batch", "--verify", f"{aci}.asc", str(aci)],
            env=gpg.env,
            check=True,
            capture_output=True,
        )
