"""Carrying out a plan: every image built once, dependencies first; a store hit stops the walk."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dgr.build
import dgr.images
import dgr.manifest_load
from dgr.errors import BuildError
from dgr.options import BuildOptions
from dgr.plan import Source, carry_out, make_plan, project_key
from dgr.store import Store
from tests.support.files import write_tree

pytestmark = pytest.mark.integration

SH = "#!/dgr/bin/busybox sh\n"
PROJECTS = {
    "zz-root/aci-manifest.yml": "name: example.com/zz-root:1\n",
    "zz-root/runlevels/builder/10.busybox.sh": (
        SH + "mkdir -p $ROOTFS/bin\ncp /bin/busybox $ROOTFS/bin/busybox\nln -s busybox $ROOTFS/bin/sh\n"
    ),
    "base/aci-manifest.yml": "name: example.com/base:1\naci: {dependencies: [example.com/zz-root:1]}\n",
    "base/files/etc/base": "base\n",
    "app/aci-manifest.yml": "name: example.com/app:1\naci: {dependencies: [example.com/base:1]}\n",
    "app/files/etc/app": "app\n",
}


class Counts:
    """Manifest files read and build() calls, per project folder."""

    def __init__(self) -> None:
        self.loads: Counter[str] = Counter()
        self.builds: Counter[str] = Counter()


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counts]:
    found = Counts()
    read, build = dgr.manifest_load.read_manifest_text, dgr.build.build

    def counted_read(project: Path) -> tuple[Path, str]:
        found.loads[project.resolve().name] += 1
        return read(project)

    def counted_build(project: Path, *args: Any, **kwargs: Any) -> dgr.images.BuildResult:
        found.builds[project.resolve().name] += 1
        return build(project, *args, **kwargs)

    monkeypatch.setattr(dgr.manifest_load, "read_manifest_text", counted_read)
    monkeypatch.setattr(dgr.build, "build", counted_build)
    monkeypatch.setattr("dgr.plan.build", counted_build)
    yield found


def test_each_image_built_once_dependencies_first(
    tmp_path: Path, options: BuildOptions, counts: Counts
) -> None:
    repo = write_tree(tmp_path / "repo", PROJECTS)
    plan = make_plan(repo / "app", options.config)
    built = carry_out(plan, options)
    assert [str(built.results[node.key].name) for node in plan.nodes] == [
        "example.com/zz-root:1",
        "example.com/base:1",
        "example.com/app:1",
    ]
    app = built.results[plan.roots[0]]
    assert [str(d.name) for d in app.dependencies] == ["example.com/base:1"]
    assert counts.builds == Counter({"zz-root": 1, "base": 1, "app": 1})
    # read once by the plan, rendered once more after the build with the attributes its
    # build scripts wrote (SPEC §3)
    assert counts.loads == Counter({"zz-root": 2, "base": 2, "app": 2})
    counts.loads.clear()
    again = carry_out(make_plan(repo / "app", options.config), options)
    assert all(result.up_to_date for result in again.results.values())
    assert counts.loads == Counter({"zz-root": 1, "base": 1, "app": 1})


def test_a_store_hit_stops_the_walk(tmp_path: Path, options: BuildOptions) -> None:
    repo = write_tree(tmp_path / "repo", PROJECTS)
    results = carry_out(make_plan(repo / "base", options.config), options).results
    for result in results.values():  # zz-root, then base
        Store(options.config.store_path).add(result.workspace.target / "image.aci")
    base = results[project_key(repo / "base")]
    plan = make_plan(repo / "app", options.config)
    assert [(str(n.name), n.source) for n in plan.nodes] == [
        ("example.com/base:1", Source.STORE),
        ("example.com/app:1", Source.PROJECT),
    ]
    app = carry_out(plan, options).results[plan.roots[0]]
    assert app.dependencies[0].image_id == base.image_id
    assert [str(d.name) for d in app.dependencies[0].dependencies] == ["example.com/zz-root:1"]


def test_a_version_asked_for_is_checked_once_built(tmp_path: Path, options: BuildOptions) -> None:
    # base/ has no version: it is generated at build time, and is not the 1 app asks for
    repo = write_tree(
        tmp_path / "repo",
        {
            **PROJECTS,
            "base/aci-manifest.yml": PROJECTS["base/aci-manifest.yml"].replace("base:1", "base"),
        },
    )
    plan = make_plan(repo / "app", options.config)
    assert plan[project_key(repo / "base")].asked == (("1", repo / "app/aci-manifest.yml"),)
    with pytest.raises(
        BuildError, match=r"dependency example.com/base:1: .*/base builds version \d+"
    ) as caught:
        carry_out(plan, options)
    assert caught.value.path == str(repo / "app/aci-manifest.yml")
