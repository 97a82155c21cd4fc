"""OCI images as dependencies: `oci:`, `oci-archive:` and `docker://` references, fetched
with skopeo (from a real docker-registry on 127.0.0.1), stacked under the image, reused byte
for byte in its OCI output; and every bad input one clear error with nothing stored."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from dgr.config import load_config
from dgr.errors import DgrError
from dgr.images import BuildResult
from dgr.options import BuildOptions
from dgr.plan import plan_build_image, plan_build_pod, plan_build_test_image
from dgr.reference import OciReference
from tests.support.files import write_tree
from tests.support.ociimages import (
    Entry,
    busybox_layer,
    layout_blobs,
    push,
    skopeo,
    write_index,
    write_layout,
)
from tests.support.podman import Podman
from tests.support.registry import Registry, running_registry

pytestmark = pytest.mark.integration

DGR = Path(sys.executable).with_name("dgr")
SH = "#!/bin/sh\nset -e\n"
BASE_ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FROM_BASE=yes", "SHARED=base"]
BASE_CONFIG = {"WorkingDir": "/var/www", "User": "web", "Labels": {"org.example.base": "busybox"}}


@dataclass(frozen=True)
class Base:
    """A two-layer busybox image in an OCI layout: the upper layer deletes /gone (a whiteout)
    and empties /opaque (an opaque directory)."""

    layout: Path
    digest: str

    def blobs(self) -> list[str]:
        return layout_blobs(self.layout, self.digest)[1]


def make_base(folder: Path, *, env: list[str] = BASE_ENV) -> Base:
    lower = busybox_layer(
        Entry("etc/motd", data=b"from the base\n"),
        Entry("gone", data=b"deleted above\n"),
        Entry("opaque", "dir", mode=0o755),
        Entry("opaque/hidden", data=b"hidden above\n"),
        Entry("var", "dir", mode=0o755),
        Entry("var/www", "dir", mode=0o755, uid=33, gid=44),
    )
    upper = [
        Entry(".wh.gone"),
        Entry("opaque", "dir", mode=0o755),
        Entry("opaque/.wh..wh..opq"),
        Entry("opaque/kept", data=b"kept\n"),
        Entry("etc", "dir", mode=0o755),
        Entry("etc/extra", data=b"extra\n"),
    ]
    digest = write_layout(folder, [lower, upper], tag="1", env=env, config=BASE_CONFIG)
    return Base(folder, digest)


@pytest.fixture
def repo(tmp_path: Path, cache_dir: Path) -> Path:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.yml").write_text(
        f"cachePath: {cache_dir}\nstorePath: {tmp_path / 'store'}\n"
    )
    return tmp_path


def options(repo: Path, *insecure: str) -> BuildOptions:
    if insecure:
        config = repo / "home" / "config.yml"
        config.write_text(config.read_text() + f"insecureOptions: [{', '.join(insecure)}]\n")
    return BuildOptions(config=load_config(repo / "home"))


def project(
    repo: Path, name: str, dependency: str, *, extra: str = "", files: dict[str, str] | None = None
) -> Path:
    manifest = f"name: example.com/{name}:1\n{extra}aci:\n  dependencies:\n    - {dependency}\n"
    return write_tree(repo / name, {"aci-manifest.yml": manifest, **(files or {})})


def oci_store_content(store: Path) -> list[str]:
    """What the store's OCI part holds beyond its locks: images, layers, blobs, tags, fetches."""
    root = store / "oci"
    found = []
    for sub in ("images", "layers", "blobs/sha256", "tags"):
        if (root / sub).is_dir():
            found += [f"{sub}/{p.name}" for p in (root / sub).iterdir()]
    if root.is_dir():
        found += [p.name for p in root.iterdir() if p.name.startswith(".")]
    return found


def layout_of(result: BuildResult) -> tuple[dict, list[str]]:  # type: ignore[type-arg]
    index = json.loads((result.workspace.oci / "index.json").read_text())
    return layout_blobs(result.workspace.oci, index["manifests"][0]["digest"])


CHECKS = {
    "runlevels/build/10.check.sh": SH + "test ! -e /gone\n"
    "test ! -e /opaque/hidden\n"
    "test -f /opaque/kept\n"
    'test "$(cat /etc/motd)" = "from the base"\n'
    "echo built > /built\n",
}


def test_an_oci_layout_is_a_base_stacked_pinned_and_reused_byte_for_byte(repo: Path) -> None:
    base = make_base(repo / "base")
    app = project(
        repo,
        "app",
        "oci:../base:1",
        files={
            **CHECKS,
            "aci-manifest.yml": "name: example.com/app:1\n"
            "aci:\n  dependencies: ['oci:../base:1']\n"
            "  app:\n    environment: [{name: SHARED, value: app}]\n",
        },
    )
    result = plan_build_image(app, options(repo))

    # resolved and pinned by digest, in the appc manifest and the OCI labels
    (dep,) = result.dependencies
    assert isinstance(dep.name, OciReference) and dep.oci is not None and dep.oci.digest == base.digest
    appc = json.loads(result.workspace.manifest_json.read_text())
    annotations = {a["name"]: a["value"] for a in appc["annotations"]}
    assert json.loads(annotations["dgr-oci-dependencies"]) == [f"oci:../base:1@{base.digest}"]

    # the OCI output: the base's blobs unchanged, then dgr's internals and this image's layer
    config, blobs = layout_of(result)
    assert blobs[:2] == base.blobs()
    for digest in base.blobs():
        hex_ = digest.removeprefix("sha256:")
        assert filecmp.cmp(base.layout / "blobs/sha256" / hex_, result.workspace.oci / "blobs/sha256" / hex_)
    assert len(blobs) == 4
    # the config inherits Env (the manifest's values win), WorkingDir, User and labels
    settings = config["config"]
    assert settings["Env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FROM_BASE=yes", "SHARED=app"]
    assert settings["WorkingDir"] == "/var/www"
    assert settings["User"] == "web:44"  # the primary group from the base's /etc/passwd
    labels = settings["Labels"]
    assert labels["org.example.base"] == "busybox"
    assert labels["org.opencontainers.image.base.name"] == "oci:../base:1"
    assert labels["org.opencontainers.image.base.digest"] == base.digest
    assert labels["org.opencontainers.image.title"] == "example.com/app"

    # the ACI is whole: the base flattened into its rootfs (deletions applied), no dependency
    assert "dependencies" not in appc
    assert appc["app"]["user"] == "web" and appc["app"]["workingDirectory"] == "/var/www"
    with tarfile.open(result.workspace.aci) as aci:
        names = set(aci.getnames())
    assert {"rootfs/bin/busybox", "rootfs/etc/extra", "rootfs/opaque/kept", "rootfs/built"} <= names
    assert not {"rootfs/gone", "rootfs/opaque/hidden"} & names

    # unchanged: up to date; a new image under the same tag: rebuilt on it
    assert plan_build_image(app, options(repo)).up_to_date
    newer = make_base(repo / "base", env=[*BASE_ENV, "NEWER=1"])
    rebuilt = plan_build_image(app, options(repo))
    assert not rebuilt.up_to_date
    assert rebuilt.dependencies[0].oci is not None and rebuilt.dependencies[0].oci.digest == newer.digest
    assert "NEWER=1" in layout_of(rebuilt)[0]["config"]["Env"]


def test_the_output_runs_under_podman_with_the_base_deletions_applied(repo: Path) -> None:
    make_base(repo / "base")
    result = plan_build_image(project(repo, "app", "oci:../base:1", files=CHECKS), options(repo))
    with Podman(repo / "podman") as podman:
        image = podman.load_oci(result.workspace.oci, "1")
        script = (
            'test ! -e /gone && test ! -e /opaque/hidden && cat /built /opaque/kept; echo "$FROM_BASE"; pwd'
        )
        out = podman.run(image, "/bin/sh", "-c", script).output
    assert out.split() == ["built", "kept", "yes", "/var/www"]


def test_an_oci_archive_by_absolute_path(repo: Path) -> None:
    base = make_base(repo / "base")
    archive = repo / "base.tar"
    skopeo("copy", f"oci:{base.layout}:1", f"oci-archive:{archive}:1", policy_dir=repo)
    result = plan_build_image(project(repo, "app", f"oci-archive:{archive}:1", files=CHECKS), options(repo))
    (dep,) = result.dependencies
    assert dep.oci is not None and dep.oci.digest == base.digest  # skopeo kept the manifest as is
    assert layout_of(result)[1][:2] == base.blobs()


def test_a_builder_can_be_an_oci_image(repo: Path) -> None:
    tools = write_layout(
        repo / "tools",
        [busybox_layer(Entry("usr", "dir", mode=0o755), Entry("usr/bin", "dir", mode=0o755),
                       Entry("usr/bin/mytool", data=b"#!/bin/sh\necho made by the tool\n", mode=0o755))],
        tag="t",
    )  # fmt: skip
    assert tools
    folder = write_tree(
        repo / "app",
        {
            "aci-manifest.yml": "name: example.com/app:1\nbuilder:\n  dependencies: ['oci:../tools:t']\n",
            "runlevels/builder/10.tool.sh": SH + "mkdir -p $ROOTFS/etc\nmytool > $ROOTFS/etc/made\n",
        },
    )
    result = plan_build_image(folder, options(repo))
    assert (result.workspace.layer / "etc/made").read_text() == "made by the tool\n"
    assert not (result.workspace.layer / "usr").exists()  # the builder's files stay out


def test_test_tools_can_be_an_oci_image(repo: Path) -> None:
    write_layout(
        repo / "bats", [[Entry("usr", "dir", mode=0o755), Entry("usr/bin/tool", data=b"t")]], tag="1"
    )
    make_base(repo / "base")
    folder = project(
        repo, "app", "oci:../base:1", extra="tester:\n  aci:\n    dependencies: ['oci:../bats:1']\n"
    )
    opts = options(repo)
    image = plan_build_test_image(folder, opts)
    result, layers = image.image, image.layers
    assert (layers[0] / "usr/bin/tool").read_bytes() == b"t"  # below the image
    assert layers[1:] == result.layers
    assert not any((layer / "usr/bin/tool").exists() for layer in result.layers)


def test_a_pod_app_inherits_the_oci_image_command_and_settings(repo: Path) -> None:
    make_base(repo / "base")
    write_tree(
        repo / "pod",
        {
            "pod-manifest.yml": "name: example.com/pod:1\npod:\n  apps:\n"
            "    - name: web\n      dependencies: ['oci:../base:1']\n"
            "      app:\n        environment: [{name: SHARED, value: pod}]\n",
        },
    )
    pod = plan_build_pod(repo / "pod", options(repo))
    app = pod.app("web").runtime_app
    assert app.exec == ("/bin/sh",)
    assert {e.name: e.value for e in app.environment}["SHARED"] == "pod"
    assert {e.name: e.value for e in app.environment}["FROM_BASE"] == "yes"
    assert (app.user, app.group, app.working_directory) == ("web", "44", "/var/www")


# --- registries ---------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Registry:  # type: ignore[misc]
    with running_registry(tmp_path / "registry") as running:
        yield running


def manifest_requests(registry: Registry) -> int:
    return len(registry.requests_matching("GET", "/manifests/")) + len(
        registry.requests_matching("HEAD", "/manifests/")
    )


def test_a_registry_tag_is_fetched_once_then_remembered(repo: Path, registry: Registry) -> None:
    base = make_base(repo / "base")
    reference = push(base.layout, "1", registry.host, "lib/busybox")
    opts = options(repo, f"http:{registry.host}")
    result = plan_build_image(project(repo, "app", reference, files=CHECKS), opts)
    assert result.dependencies[0].oci is not None and result.dependencies[0].oci.digest == base.digest
    assert layout_of(result)[1][:2] == base.blobs()  # the registry's digests
    asked = manifest_requests(registry)
    assert asked
    # another image on the same tag, in another build: no request at all
    other = plan_build_image(project(repo, "other", reference, files=CHECKS), opts)
    assert other.dependencies[0].oci is not None and manifest_requests(registry) == asked
    # a digest reference: the same image, found in the store
    pinned = f"docker://{registry.host}/lib/busybox@{base.digest}"
    plan_build_image(project(repo, "pinned", pinned, files=CHECKS), opts)


def test_docker_manifests_and_multi_arch_indexes(repo: Path, registry: Registry) -> None:
    base = make_base(repo / "base")
    arm = write_layout(repo / "base", [busybox_layer()], tag="arm", architecture="arm64")
    index = write_index(repo / "base", "multi", {"arm64": arm, "amd64": base.digest})
    opts = options(repo, f"http:{registry.host}")
    # a Docker v2s2 manifest: pinned by the registry's digest, its layer blobs reused as they are
    v2 = f"docker://{registry.host}/v2/busybox:1"
    skopeo(
        "copy", "--dest-tls-verify=false", "--format", "v2s2", f"oci:{base.layout}:1", v2, policy_dir=repo
    )
    raw = skopeo("inspect", "--tls-verify=false", "--raw", v2, policy_dir=repo).stdout
    assert "vnd.docker.distribution.manifest.v2" in raw
    result = plan_build_image(project(repo, "v2", v2, files=CHECKS), opts)
    dep = result.dependencies[0]
    assert dep.oci is not None and dep.oci.digest == "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    assert layout_of(result)[1][:2] == base.blobs()
    # an index (registry and local layout): this host's entry
    multi = f"docker://{registry.host}/multi/busybox:1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{base.layout}:multi", multi, policy_dir=repo)
    for reference in (multi, "oci:../base:multi", f"docker://{registry.host}/multi/busybox@{index}"):
        found = plan_build_image(project(repo, "multi", reference, files=CHECKS), opts).dependencies[0]
        assert found.oci is not None and found.oci.digest == base.digest, reference


def test_registries_conf_makes_a_registry_insecure_and_mirrors_it(
    repo: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = make_base(repo / "base")
    push(base.layout, "1", registry.host, "busybox")
    conf = repo / "registries.conf"
    conf.write_text(
        f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n\n'
        '[[registry]]\nprefix = "mirrored.example"\nlocation = "mirrored.example"\n'
        f'[[registry.mirror]]\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    direct = plan_build_image(
        project(repo, "direct", f"docker://{registry.host}/busybox:1", files=CHECKS), options(repo)
    )
    assert direct.dependencies[0].oci is not None
    # no dgr insecureOptions: registries.conf said it; a name only the mirror serves
    mirrored = plan_build_image(
        project(repo, "mirrored", "docker://mirrored.example/busybox:1", files=CHECKS), options(repo)
    )
    assert mirrored.dependencies[0].oci is not None and mirrored.dependencies[0].oci.digest == base.digest


def test_parallel_builds_fetch_once(repo: Path, registry: Registry) -> None:
    base = make_base(repo / "base")
    reference = push(base.layout, "1", registry.host, "busybox")
    options(repo, f"http:{registry.host}")
    folders = [project(repo, f"app{i}", reference, files=CHECKS) for i in range(3)]
    procs = [
        subprocess.Popen(
            [str(DGR), "-H", str(repo / "home"), "-W", str(folder), "build"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for folder in folders
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    for digest in base.blobs():
        assert len(registry.requests_matching("GET", f"/blobs/{digest}")) == 1
    assert sum("Fetching" in out for out in outputs) == 1


def test_credentials_come_from_the_containers_auth_file(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = make_base(repo / "base")
    with running_registry(tmp_path / "private", users={"alice": "secret"}) as private:
        reference = push(base.layout, "1", private.host, "busybox", creds="alice:secret")
        auth = repo / "auth.json"
        auth.write_text(json.dumps({"auths": {private.host: {"auth": "YWxpY2U6d3Jvbmc="}}}))  # alice:wrong
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
        opts = options(repo, f"http:{private.host}")
        with pytest.raises(DgrError) as refused:
            plan_build_image(project(repo, "app", reference), opts)
        assert reference in str(refused.value) and "refused access" in str(refused.value)
        assert oci_store_content(repo / "store") == []
        auth.write_text(json.dumps({"auths": {private.host: {"auth": "YWxpY2U6c2VjcmV0"}}}))  # alice:secret
        assert plan_build_image(project(repo, "app", reference), opts).dependencies[0].oci is not None


# --- bad input: one clear error naming the reference, nothing stored ------------------------------


def tamper_registry_blob(registry_folder: Path, digest: str) -> None:
    hex_ = digest.removeprefix("sha256:")
    data = registry_folder / "data/docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"
    content = bytearray(data.read_bytes())
    content[-20] ^= 0xFF
    data.write_bytes(bytes(content))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unreachable", "cannot reach 127.0.0.1:1"),
        ("missing tag", "no such image"),
        ("unknown digest", "no such image"),
        ("tampered blob", "does not match its digest"),
    ],
)
def test_registry_failures(repo: Path, tmp_path: Path, registry: Registry, case: str, expected: str) -> None:
    base = make_base(repo / "base")
    reference = push(base.layout, "1", registry.host, "busybox")
    host = registry.host
    if case == "unreachable":
        reference, host = "docker://127.0.0.1:1/busybox:1", "127.0.0.1:1"
    elif case == "missing tag":
        reference = reference.replace(":1", ":nope")
    elif case == "unknown digest":
        reference = f"docker://{host}/busybox@sha256:{'0' * 64}"
    else:
        tamper_registry_blob(tmp_path / "registry", base.blobs()[0])
    with pytest.raises(DgrError) as failed:
        plan_build_image(project(repo, "app", reference), options(repo, f"http:{host}"))
    message = str(failed.value)
    assert reference in message and expected in message, message
    assert "aci-manifest.yml" in message
    assert oci_store_content(repo / "store") == []


HOSTILE = {
    "dot-dot": ([Entry("../escaped", data=b"x")], "contains '..'"),
    "absolute hard link": ([Entry("etc", "dir", mode=0o755), Entry("etc/pw", "link", target="/etc/passwd")],
                           "absolute path"),
    "symlink out": ([Entry("escape", "symlink", target="/"), Entry("escape/tmp/pwned", data=b"x")],
                    "outside the destination"),
    "device": ([Entry("dev", "dir", mode=0o755), Entry("dev/sda", "block", device=(8, 0), mode=0o660)],
               "device node"),
    "corrupt layout": ([], "does not match its digest"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_or_corrupt_layers_are_refused(repo: Path, case: str) -> None:
    entries, expected = HOSTILE[case]
    digest = write_layout(repo / "evil", [busybox_layer(), entries or [Entry("ok", data=b"fine")]], tag="1")
    if case == "corrupt layout":
        blob = repo / "evil/blobs/sha256" / layout_blobs(repo / "evil", digest)[1][1].removeprefix("sha256:")
        blob.write_bytes(blob.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(DgrError) as failed:
        plan_build_image(project(repo, "app", "oci:../evil:1"), options(repo))
    message = str(failed.value)
    assert "oci:../evil:1" in message and expected in message, message
    assert oci_store_content(repo / "store") == []
    assert not os.path.exists("/tmp/pwned") and not (repo / "escaped").exists()


def test_a_missing_layout_or_tag_is_named(repo: Path) -> None:
    make_base(repo / "base")
    for reference, expected in (
        ("oci:../nowhere:1", "does not exist"),
        ("oci:../base:2", "no image tagged '2'"),
    ):
        with pytest.raises(DgrError) as failed:
            plan_build_image(project(repo, "app", reference), options(repo))
        assert reference in str(failed.value) and expected in str(failed.value)
    assert oci_store_content(repo / "store") == []


def test_the_cli_prints_one_error_without_traceback(repo: Path) -> None:
    folder = project(repo, "app", "docker://127.0.0.1:1/busybox:1")
    options(repo, "http:127.0.0.1:1")
    done = subprocess.run(
        [str(DGR), "-H", str(repo / "home"), "-W", str(folder), "build"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "docker://127.0.0.1:1/busybox:1: cannot reach 127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr


def test_store_lists_and_forgets_oci_images(repo: Path, registry: Registry) -> None:
    base = make_base(repo / "base")
    reference = push(base.layout, "1", registry.host, "busybox")
    opts = options(repo, f"http:{registry.host}")
    plan_build_image(project(repo, "app", reference), opts)
    home = ["-H", str(repo / "home"), "--json"]
    listed = json.loads(
        subprocess.run([str(DGR), *home, "store", "list"], capture_output=True, text=True).stdout
    )
    (entry,) = listed["ociImages"]
    assert (
        entry["digest"] == base.digest
        and entry["reference"] == reference
        and entry["layers"] == base.blobs()
    )
    done = subprocess.run([str(DGR), *home, "store", "rm", reference], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert oci_store_content(repo / "store") == []
    asked = manifest_requests(registry)
    plan_build_image(project(repo, "app", reference), opts)  # asked again, fetched again
    assert manifest_requests(registry) > asked


def test_an_image_layer_blob_is_found_again_by_its_image_id(repo: Path, cache_dir: Path) -> None:
    # images built on it reuse the blob instead of compressing the layer again (a Debian base
    # is 180 MB: 3 s of gzip per dependent build)
    from dgr.oci import BlobCache

    folder = write_tree(
        repo / "base", {"aci-manifest.yml": "name: example.com/base:1\n", "files/etc/b": "b\n"}
    )
    result = plan_build_image(folder, options(repo))
    blob = BlobCache(cache_dir / "blobs").lookup(result.image_id)
    assert blob is not None and blob.digest == layout_of(result)[1][-1]
