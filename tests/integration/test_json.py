"""`--json`: one document on stdout per command, logs on stderr; target/build.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dgr.cli import main
from tests.support.files import write_tree

pytestmark = pytest.mark.integration

SH = "#!/dgr/bin/busybox sh\n"
PASSED = 3  # the build and templates items, and the bats test "passes"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "aci-json",
        {
            "aci-manifest.yml": "name: example.com/aci-json:1.2\n",
            "tests/ok.bats": '@test "passes" {\n  true\n}\n@test "skipped" {\n  skip\n}\n',
            "tests/bad.bats": '@test "fails" {\n  false\n}\n',
        },
    )


def run_json(capsys: pytest.CaptureFixture[str], home: Path, *argv: str) -> tuple[int, Any, str]:
    code = main(["-H", str(home), "--json", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_build_prints_the_record_that_build_json_holds(
    image: Path, dgr_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document, err = run_json(capsys, dgr_home, "-W", str(image), "build")
    assert code == 0 and "Finished building" in err
    (record,) = document["images"]
    target = image / "target"
    assert json.loads((target / "build.json").read_text()) == record
    index = json.loads((target / "oci/index.json").read_text())
    assert record["name"] == "example.com/aci-json" and record["version"] == "1.2"
    assert record["reference"] == "example.com/aci-json:1.2"
    assert record["imageId"] == (target / "image.id").read_text().strip()
    assert record["created"] == "1970-01-01T00:00:00Z"
    assert record["oci"]["manifestDigest"] == index["manifests"][0]["digest"]
    assert record["oci"]["tag"] == "1.2" and record["oci"]["reference"] == f"oci:{target / 'oci'}:1.2"
    manifest = target / "oci/blobs/sha256" / record["oci"]["manifestDigest"].removeprefix("sha256:")
    assert json.loads(manifest.read_text())["config"]["digest"] == record["oci"]["configDigest"]
    assert record["target"] == str(target)
    for path in record["outputs"].values():
        assert Path(path).exists()
    # up to date: the same document
    assert run_json(capsys, dgr_home, "-W", str(image), "build")[1] == document


def test_a_failed_rebuild_keeps_the_record_of_the_kept_image(image: Path, dgr_home: Path) -> None:
    assert main(["-H", str(dgr_home), "-W", str(image), "build"]) == 0
    before = (image / "target/build.json").read_text()
    write_tree(image, {"runlevels/build/10.fail.sh": SH + "exit 1\n"})
    assert main(["-H", str(dgr_home), "-W", str(image), "build"]) == 1
    # the previous outputs stay (docs/build.md, "After a failed build"), and so does their record
    assert (image / "target/build.json").read_text() == before
    assert (image / "target/image.id").read_text().strip() in before


def test_test_counts_and_failures(image: Path, dgr_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, document, err = run_json(capsys, dgr_home, "-W", str(image), "test")
    assert code == 1 and document["exitCode"] == 1
    counts = {k: document[k] for k in ("passed", "failed", "skipped", "errors", "xfailed", "xpassed")}
    assert counts == {"passed": PASSED, "failed": 1, "skipped": 1, "errors": 0, "xfailed": 0, "xpassed": 0}
    assert document["failures"] == ["tests/bad.bats::fails"]
    assert "1 failed" in err  # pytest's own report went to stderr


def test_install_and_store(image: Path, dgr_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, document, _ = run_json(capsys, dgr_home, "-W", str(image), "install")
    assert code == 0
    (record,) = document["images"]
    store = dgr_home.parent / "store"
    assert record["installed"]["to"] == "store" and record["installed"]["store"] == str(store)
    assert Path(record["installed"]["aci"]).is_file()
    code, listed, _ = run_json(capsys, dgr_home, "store", "list")
    assert code == 0
    (entry,) = listed["images"]
    assert entry["imageId"] == record["imageId"] and entry["reference"] == "example.com/aci-json:1.2"
    assert entry["os"] == "linux" and entry["size"] > 0
    code, removed, _ = run_json(capsys, dgr_home, "store", "rm", "example.com/aci-json")
    assert [e["imageId"] for e in removed["removed"]] == [record["imageId"]]


def test_clean_then_build_prints_one_document(
    image: Path, dgr_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document, _ = run_json(capsys, dgr_home, "-W", str(image), "clean", "build")
    assert code == 0 and list(document) == ["images"]


def test_pod_build_and_kube(tmp_path: Path, dgr_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "aci-base/aci-manifest.yml": "name: example.com/aci-base:1\n",
            "pod-p/pod-manifest.yml": (
                "name: example.com/pod-p:1\npod:\n  apps:\n"
                "    - name: one\n      dependencies: [example.com/aci-base:1]\n"
                "    - name: two\n      dependencies: [example.com/aci-base:1]\n"
            ),
        },
    )
    code, document, _ = run_json(capsys, dgr_home, "-W", str(tmp_path / "pod-p"), "build")
    assert code == 0
    assert document["pod"]["reference"] == "example.com/pod-p:1"
    assert Path(document["pod"]["manifest"]).is_file()
    assert [image["app"] for image in document["images"]] == ["one", "two"]
    code, kube, _ = run_json(
        capsys, dgr_home, "-W", str(tmp_path / "pod-p"), "kube", "-o", str(tmp_path / "k.yml")
    )
    assert code == 0 and kube["kube"] == str(tmp_path / "k.yml") and (tmp_path / "k.yml").is_file()
    assert kube["images"] == document["images"]


def test_install_after_tests_prints_only_its_own_document(
    image: Path, dgr_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (image / "tests/bad.bats").unlink()
    code, document, err = run_json(capsys, dgr_home, "-W", str(image), "install", "-t")
    assert code == 0 and document["images"][0]["installed"]["to"] == "store"
    assert " passed" in err  # pytest's report went to stderr
