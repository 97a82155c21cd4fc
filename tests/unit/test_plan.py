"""The plan of a project: every image it needs, where it comes from, in dependency order."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgr.errors import BuildError
from dgr.options import BuildOptions
from dgr.plan import Plan, Source, make_plan, project_key
from tests.support.files import write_tree


def names(plan: Plan) -> list[tuple[str, str]]:
    """Each node's name and source, in plan order, after checking that order."""
    seen: set[str] = set()
    for node in plan.nodes:
        assert set(node.needs) <= seen, f"{node.key} before what it needs"
        seen.add(node.key)
    return [(str(node.name), node.source.value) for node in plan.nodes]


def test_local_chain_in_dependency_order_each_manifest_once(tmp_path: Path, options: BuildOptions) -> None:
    repo = write_tree(
        tmp_path / "repo",
        {
            # alphabetical order is the opposite of dependency order
            "zz-base/aci-manifest.yml": "name: example.com/zz-base:1\n",
            "aa-middle/aci-manifest.yml": (
                "name: example.com/aa-middle:1\naci: {dependencies: [example.com/zz-base:1]}\n"
            ),
            "tools/aci-manifest.yml": "name: example.com/tools:1\n",
            "unrelated/aci-manifest.yml": "name: example.com/unrelated:1\n",
            "broken/aci-manifest.yml": "name: [\n",
            "app/aci-manifest.yml": (
                "name: example.com/app:1\n"
                "builder: {dependencies: [example.com/tools:1]}\n"
                "tester: {aci: {dependencies: [example.com/zz-base:1]}}\n"
                "aci: {dependencies: [example.com/aa-middle:1]}\n"
            ),
        },
    )
    plan = make_plan(repo / "app", options.config)
    assert sorted(names(plan)) == [
        ("example.com/aa-middle:1", "project"),
        ("example.com/app:1", "project"),
        ("example.com/tools:1", "project"),
        ("example.com/zz-base:1", "project"),
    ]
    assert plan.nodes[-1].key == plan.roots[0]
    app = plan[project_key(repo / "app")]
    assert plan.roots == (app.key,)
    assert app.aci == (project_key(repo / "aa-middle"),)
    assert app.builder == (project_key(repo / "tools"),)
    assert app.tester == (project_key(repo / "zz-base"),)
    assert app.manifest is not None and app.manifest.name.name == "example.com/app"
    # every manifest of the repository read once, the broken and unrelated ones included
    assert plan.manifest_loads == 6
    assert [n.key for n in plan.closure((project_key(repo / "aa-middle"),))] == [
        project_key(repo / "zz-base"),
        project_key(repo / "aa-middle"),
    ]


def test_a_cycle_of_three_projects_is_one_error_naming_it(tmp_path: Path, options: BuildOptions) -> None:
    repo = write_tree(
        tmp_path / "repo",
        {
            "a/aci-manifest.yml": "name: example.com/a:1\naci: {dependencies: [example.com/b:1]}\n",
            "b/aci-manifest.yml": "name: example.com/b:1\nbuilder: {dependencies: [example.com/c:1]}\n",
            "c/aci-manifest.yml": "name: example.com/c:1\naci: {dependencies: [example.com/a:1]}\n",
        },
    )
    with pytest.raises(BuildError) as caught:
        make_plan(repo / "a", options.config)
    assert caught.value.message == (
        "dependency cycle: example.com/a -> example.com/b -> example.com/c -> example.com/a"
    )
    assert caught.value.path == str(repo / "a" / "aci-manifest.yml")
    with pytest.raises(
        BuildError, match="cycle: example.com/b -> example.com/c -> example.com/a -> example.com/b"
    ):
        make_plan(repo / "b", options.config)


def test_oci_and_discovery_references_are_fetched_nodes(tmp_path: Path, options: BuildOptions) -> None:
    repo = write_tree(
        tmp_path / "repo",
        {
            "app/aci-manifest.yml": (
                "name: example.com/app:1\n"
                "aci: {dependencies: ['docker://127.0.0.1:5000/busybox:1', example.com/elsewhere:2]}\n"
            ),
        },
    )
    plan = make_plan(repo / "app", options.config)
    assert sorted(names(plan)) == [
        ("docker://127.0.0.1:5000/busybox:1", "oci"),
        ("example.com/app:1", "project"),
        ("example.com/elsewhere:2", "discovery"),
    ]
    assert [node.built for node in plan.nodes] == [False, False, True]


def test_a_version_mismatch_names_the_folder(tmp_path: Path, options: BuildOptions) -> None:
    repo = write_tree(
        tmp_path / "repo",
        {
            "base/aci-manifest.yml": "name: example.com/base:2\n",
            "app/aci-manifest.yml": "name: example.com/app:1\naci: {dependencies: [example.com/base]}\n",
        },
    )
    assert names(make_plan(repo / "app", options.config))[0] == ("example.com/base:2", "project")
    (repo / "app/aci-manifest.yml").write_text(
        "name: example.com/app:1\naci: {dependencies: [example.com/base:1]}\n"
    )
    # base:1 is not what base/ builds: not a local project, so discovery would be asked
    assert names(make_plan(repo / "app", options.config))[0] == ("example.com/base:1", "discovery")


def test_the_test_image_is_a_node_when_tests_customise_it(tmp_path: Path, options: BuildOptions) -> None:
    repo = write_tree(
        tmp_path / "repo",
        {
            "tools/aci-manifest.yml": "name: example.com/tools:1\n",
            "app/aci-manifest.yml": (
                "name: example.com/app:1\ntester: {builder: {dependencies: [example.com/tools:1]}}\n"
            ),
            "app/tests/runlevels/build/10.sh": "#!/bin/sh\n",
        },
    )
    plan = make_plan(repo / "app", options.config)
    assert sorted(names(plan)) == [
        ("example.com/app-tests:1", "tests"),
        ("example.com/app:1", "project"),
        ("example.com/tools:1", "project"),
    ]
    tests = plan.test_node(plan.roots[0])
    assert tests is not None and tests.project == (repo / "app/tests").resolve()
    assert tests.aci == plan.roots and tests.builder == (project_key(repo / "tools"),)
    (repo / "app/tests/runlevels/build/10.sh").unlink()
    (repo / "app/tests/runlevels/build").rmdir()
    (repo / "app/tests/runlevels").rmdir()
    assert make_plan(repo / "app", options.config).test_node(plan.roots[0]) is None


def test_a_pod_of_two_apps(tmp_path: Path, options: BuildOptions) -> None:
    repo = write_tree(
        tmp_path / "repo",
        {
            "base/aci-manifest.yml": "name: example.com/base:1\n",
            "web/aci-manifest.yml": "name: example.com/web:1\naci: {dependencies: [example.com/base:1]}\n",
            "pod-site/pod-manifest.yml": (
                "name: example.com/pod-site:1\n"
                "pod:\n  apps:\n"
                "    - name: front\n      dependencies: [example.com/web:1]\n"
                "    - name: side\n      dependencies: [example.com/base:1]\n"
            ),
        },
    )
    plan = make_plan(repo / "pod-site", options.config)
    assert plan.pod is not None and [a.name for a in plan.pod.apps] == ["front", "side"]
    assert [plan[key].source for key in plan.roots] == [Source.POD_APP, Source.POD_APP]
    assert [n for n in names(plan) if n[1] == "project"] == [
        ("example.com/base:1", "project"),
        ("example.com/web:1", "project"),
    ]
    assert {str(plan[key].name) for key in plan.roots} == {
        str(plan.pod.image_name(app)) for app in plan.pod.apps
    }
    assert plan[plan.roots[1]].aci == (project_key(repo / "base"),)
    assert plan.manifest_loads == 3  # base, web, the pod (the pod is no aci project)
