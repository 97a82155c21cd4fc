"""The test system on real images (dgr.tester): the original's tester cases and ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgr.options import BuildOptions
from dgr.plan import plan_build_test_image
from dgr.tester import TesterOptions, WaitError, run_image_tests, start_test_container

pytestmark = pytest.mark.integration


def project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if "/runlevels/" in f"/{rel}" or rel.endswith(".sh"):
            path.chmod(0o755)
    return root


def outcomes(runs: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(r.name, r.status) for run in runs for r in run.results]


def test_successful_bats_test_passes(options: BuildOptions, tmp_path: Path) -> None:
    p = project(
        tmp_path / "aci-ok",
        {
            "aci-manifest.yml": "name: example.com/aci-ok:1\n",
            "tests/ok.bats": '#!/usr/bin/env bats\n@test "it works" {\n  [ -x /dgr/bin/busybox ]\n}\n',
        },
    )
    runs = run_image_tests(plan_build_test_image(p, options), options)
    assert outcomes(runs) == [("it works", "ok")]
    assert runs[0].returncode == 0


def test_failing_bats_test_is_reported_with_its_name(options: BuildOptions, tmp_path: Path) -> None:
    p = project(
        tmp_path / "aci-ko",
        {
            "aci-manifest.yml": "name: example.com/aci-ko:1\n",
            "tests/ko.bats": (
                '@test "passes" {\n  true\n}\n\n@test "does not pass" {\n  echo "look here"\n  false\n}\n'
            ),
        },
    )
    runs = run_image_tests(plan_build_test_image(p, options), options)
    assert outcomes(runs) == [("passes", "ok"), ("does not pass", "not ok")]
    assert runs[0].returncode == 1
    assert "look here" in runs[0].results[1].diagnostics


ENV_BATS = """
@test "environment" {
  [ "${APP_ONLY-unset}" = "%s" ]
  [ "${BOTH-unset}" = "%s" ]
  [ "${TESTER_ONLY-unset}" = "%s" ]
}
"""


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("name: example.com/aci-env:1\n", ("unset", "unset", "unset")),
        (
            "name: example.com/aci-env:1\n"
            "aci:\n  app:\n    environment:\n      - {name: APP_ONLY, value: app}\n",
            ("app", "unset", "unset"),
        ),
        (
            "name: example.com/aci-env:1\n"
            "aci:\n  app:\n    environment:\n"
            "      - {name: APP_ONLY, value: app}\n      - {name: BOTH, value: app}\n"
            "tester:\n  aci:\n    app:\n      environment:\n"
            "        - {name: BOTH, value: tester}\n        - {name: TESTER_ONLY, value: tester}\n",
            ("app", "tester", "tester"),
        ),
    ],
    ids=["no-env", "app-only", "app-and-tester-conflict"],
)
def test_tester_environment(
    options: BuildOptions, tmp_path: Path, manifest: str, expected: tuple[str, str, str]
) -> None:
    p = project(tmp_path / "aci-env", {"aci-manifest.yml": manifest, "tests/env.bats": ENV_BATS % expected})
    runs = run_image_tests(plan_build_test_image(p, options), options)
    assert outcomes(runs) == [("environment", "ok")], runs[0].output


def test_wait_sh_never_succeeding_fails_with_its_last_output(options: BuildOptions, tmp_path: Path) -> None:
    p = project(
        tmp_path / "aci-wait",
        {
            "aci-manifest.yml": "name: example.com/aci-wait:1\n",
            "tests/wait.sh": "#!/bin/sh\necho not ready yet\nexit 3\n",
            "tests/x.bats": '@test "never runs" {\n  true\n}\n',
        },
    )
    image = plan_build_test_image(p, options)
    with start_test_container(image, options, TesterOptions(wait_tries=3, wait_interval=0.05)) as container:
        with pytest.raises(WaitError, match="wait.sh never succeeded") as failure:
            container.wait_ready()
    assert "not ready yet" in (failure.value.details or "")


def test_wait_sh_is_polled_until_the_app_is_ready(options: BuildOptions, tmp_path: Path) -> None:
    p = project(
        tmp_path / "aci-slow",
        {
            "aci-manifest.yml": (
                "name: example.com/aci-slow:1\n"
                "aci:\n  app:\n    exec: [/dgr/bin/busybox, sh, -c, "
                "'/dgr/bin/busybox sleep 0.3; echo up > /tmp/ready; exec /dgr/bin/busybox sleep 1000']\n"
            ),
            "tests/wait.sh": "#!/bin/sh\ntest -f /tmp/ready\n",
            "tests/x.bats": '@test "app is up" {\n  [ "$(cat /tmp/ready)" = up ]\n}\n',
        },
    )
    runs = run_image_tests(
        plan_build_test_image(p, options), options, TesterOptions(wait_tries=50, wait_interval=0.05)
    )
    assert outcomes(runs) == [("app is up", "ok")]


def test_prestart_runs_before_the_tests(options: BuildOptions, tmp_path: Path) -> None:
    p = project(
        tmp_path / "aci-tmpl",
        {
            "aci-manifest.yml": "name: example.com/aci-tmpl:1\n",
            "attributes/a.yml": "default:\n  who: world\n",
            "templates/etc/hello.tmpl": "Hello {{ who }}\n",
            "runlevels/prestart-late/10.mark.sh": "#!/dgr/bin/busybox sh\necho late > /etc/late\n",
            "tests/t.bats": (
                '@test "rendered" {\n  [ "$(cat /etc/hello)" = "Hello world" ]\n  [ -f /etc/late ]\n}\n'
            ),
        },
    )
    runs = run_image_tests(plan_build_test_image(p, options), options)
    assert outcomes(runs) == [("rendered", "ok")], runs[0].output


def test_tests_folder_and_tester_dependencies_make_the_test_image(
    options: BuildOptions, tmp_path: Path
) -> None:
    project(
        tmp_path / "aci-tool",
        {
            "aci-manifest.yml": "name: example.com/aci-tool:1\n",
            "files/usr/share/tool/marker": "tool\n",
        },
    )
    p = project(
        tmp_path / "aci-main",
        {
            "aci-manifest.yml": (
                "name: example.com/aci-main:1\n"
                "tester:\n  aci:\n    dependencies:\n      - example.com/aci-tool:1\n"
            ),
            "files/etc/main": "main\n",
            "tests/files/etc/test-only": "test\n",
            "tests/runlevels/build/10.mark.sh": "#!/dgr/bin/busybox sh\necho built > /etc/test-build\n",
            "tests/attributes/t.yml": "default:\n  flavour: tested\n",
            "tests/templates/etc/flavour.tmpl": "{{ flavour }}\n",
            "tests/t.bats": (
                '@test "image files" {\n  [ "$(cat /etc/main)" = main ]\n}\n'
                '@test "tests/ files, runlevels and templates" {\n'
                '  [ "$(cat /etc/test-only)" = test ]\n  [ "$(cat /etc/test-build)" = built ]\n'
                '  [ "$(cat /etc/flavour)" = tested ]\n}\n'
                '@test "tester dependency" {\n  [ "$(cat /usr/share/tool/marker)" = tool ]\n}\n'
            ),
        },
    )
    image = plan_build_test_image(p, options)
    result = image.image
    runs = run_image_tests(image, options)
    assert [s for _, s in outcomes(runs)] == ["ok", "ok", "ok"], runs[0].output
    # the image itself is unchanged: the test additions live in the test image only
    assert not (result.workspace.layer / "etc" / "test-only").exists()
