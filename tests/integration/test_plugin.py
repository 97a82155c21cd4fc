"""The pytest plugin on real images, run in a subprocess (pytester), with and without xdist."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DGR = Path(sys.executable).with_name("dgr")


@pytest.fixture
def home(dgr_home: Path) -> Path:
    """A dgr configuration folder sharing the session's cache, with a private store."""
    return dgr_home


@pytest.fixture(params=["no-xdist", "xdist"])
def xdist_args(request: pytest.FixtureRequest) -> list[str]:
    return ["-n", "2"] if request.param == "xdist" else ["-p", "no:xdist"]


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.startswith("runlevels/") or rel.endswith(".sh"):
            path.chmod(0o755)
    return root


def run(pytester: pytest.Pytester, home: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--dgr-home={home}", *args, timeout=600)


OK_AND_KO = """#!/usr/bin/env bats

@test "busybox is there" {
  [ -x /dgr/bin/busybox ]
}

@test "this one fails" {
  echo "expected 1, got 2"
  [ 1 = 2 ]
}

@test "skipped: later" {
  skip "not today"
}
"""


def test_bats_results_per_test(pytester: pytest.Pytester, home: Path, xdist_args: list[str]) -> None:
    write(
        pytester.path / "aci-one",
        {
            "aci-manifest.yml": "name: example.com/aci-one:1\n",
            "tests/one.bats": OK_AND_KO,
        },
    )
    result = run(pytester, home, "-rA", *xdist_args)
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*bats: not ok 2 this one fails (one.bats)*", "*expected 1, got 2*"])
    lines = result.stdout.lines
    for expected in (
        "PASSED aci-one::build",
        "PASSED aci-one::templates",
        "PASSED aci-one/tests/one.bats::busybox is there",
        "FAILED aci-one/tests/one.bats::this one fails - bats: not ok",
        "SKIPPED [1] aci-one/tests/one.bats:12: not today",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, result.stdout.str())


def test_failed_build_is_one_failure(pytester: pytest.Pytester, home: Path, xdist_args: list[str]) -> None:
    write(
        pytester.path / "aci-broken",
        {
            "aci-manifest.yml": "name: example.com/aci-broken:1\n",
            "runlevels/build/10.fail.sh": "#!/dgr/bin/busybox sh\necho 'cannot do it'\nexit 4\n",
            "tests/x.bats": '@test "a" {\n  true\n}\n@test "b" {\n  true\n}\n',
            "tests/test_py.py": "def test_py(dgr_container):\n    pass\n",
        },
    )
    result = run(pytester, home, "-rA", *xdist_args)
    assert result.ret == 1
    out = result.stdout.str()
    assert "runlevel build failed: script" in out and "10.fail.sh" in out
    assert "cannot do it" in out
    assert "build log" in out
    # the other items: one short line each, no traceback of dgr's internals
    assert out.count("build of aci-broken failed") >= 4
    assert "Traceback" not in out and "dgr/build.py" not in out


def test_wait_sh_never_succeeding(pytester: pytest.Pytester, home: Path) -> None:
    write(
        pytester.path / "aci-never",
        {
            "aci-manifest.yml": "name: example.com/aci-never:1\n",
            "tests/wait.sh": "#!/bin/sh\necho still starting\nexit 1\n",
            "tests/x.bats": '@test "never runs" {\n  true\n}\n',
        },
    )
    result = run(pytester, home, "--dgr-wait-tries=2", "--dgr-wait-interval=0.05")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*wait.sh never succeeded*", "*still starting*"])


def test_templates_item_renders_overrides(pytester: pytest.Pytester, home: Path) -> None:
    write(
        pytester.path / "aci-tmpl",
        {
            "aci-manifest.yml": "name: example.com/aci-tmpl:1\n",
            "attributes/a.yml": "default:\n  who: world\n",
            "templates/etc/hello.tmpl": "Hello {{ who }} {{ extra }}\n",
            "tests/overrides/good.json": '{"extra": "x"}\n',
        },
    )
    result = run(pytester, home, "-rA")
    # without the override, `extra` is missing: the default rendering fails and says where
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*aci-tmpl::templates*", "*extra*"])
    # the error names the project's file, not the temporary copy it was rendered from
    result.stdout.fnmatch_lines([f"*{pytester.path / 'aci-tmpl' / 'templates' / 'etc' / 'hello.tmpl'}*"])


JUNIT_PY = """
def test_exec(dgr_container):
    result = dgr_container.exec(["/dgr/bin/busybox", "cat", "/etc/hello"])
    assert (result.returncode, result.output) == (0, "Hello world\\n")


def test_image(dgr_image):
    assert dgr_image.name.name == "example.com/aci-py"
"""


def test_python_tests_and_junit_names(pytester: pytest.Pytester, home: Path, xdist_args: list[str]) -> None:
    write(
        pytester.path / "images" / "aci-py",
        {
            "aci-manifest.yml": "name: example.com/aci-py:1\n",
            "attributes/a.yml": "default:\n  who: world\n",
            "templates/etc/hello.tmpl": "Hello {{ who }}\n",
            "tests/a.bats": '@test "hello is rendered" {\n  [ "$(cat /etc/hello)" = "Hello world" ]\n}\n',
            "tests/test_py.py": JUNIT_PY,
        },
    )
    report = pytester.path / "junit.xml"
    result = run(pytester, home, f"--junitxml={report}", *xdist_args)
    result.assert_outcomes(passed=5)
    cases = {(c.get("classname"), c.get("name")) for c in ET.parse(report).iter("testcase")}
    assert cases == {
        ("images.aci-py", "build"),
        ("images.aci-py", "templates"),
        ("images.aci-py.tests.a.bats", "hello is rendered"),
        ("images.aci-py.tests.test_py", "test_exec"),
        ("images.aci-py.tests.test_py", "test_image"),
    }


COUNTING_RUNLEVEL = '#!/dgr/bin/busybox sh\necho "$ACI_NAME" >> /counter/builds\n'


def test_many_images_in_parallel_build_once(pytester: pytest.Pytester, home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.mkdir()
    counter.chmod(0o777)  # an existing host folder keeps its owner: the sandbox's root is not root here
    mount = f"build:\n  mountPoints:\n    - {{from: {counter}, to: /counter}}\n"
    names = [f"aci-img{i}" for i in range(8)]
    for name in names:
        deps = ""
        if name in ("aci-img1", "aci-img2"):
            deps = "aci:\n  dependencies:\n    - example.com/aci-img0:1\n"
        write(
            pytester.path / name,
            {
                "aci-manifest.yml": f"name: example.com/{name}:1\n{mount}{deps}",
                "runlevels/build/10.count.sh": COUNTING_RUNLEVEL,
                "files/etc/" + name: name + "\n",
                "tests/t.bats": f'@test "{name} has its file" {{\n  [ "$(cat /etc/{name})" = {name} ]\n}}\n',
            },
        )
    # the dependents also see their dependency's file
    for name in ("aci-img1", "aci-img2"):
        with open(pytester.path / name / "tests" / "t.bats", "a") as f:
            f.write('@test "base file" {\n  [ "$(cat /etc/aci-img0)" = aci-img0 ]\n}\n')
    result = run(pytester, home, "-n", "2")
    result.assert_outcomes(passed=8 * 3 + 2)
    built = sorted((counter / "builds").read_text().split())
    assert built == sorted(names), built


def test_dependency_failing_fails_its_dependents(pytester: pytest.Pytester, home: Path) -> None:
    write(
        pytester.path / "aci-base",
        {
            "aci-manifest.yml": "name: example.com/aci-base:1\n",
            "runlevels/build/10.fail.sh": "#!/dgr/bin/busybox sh\nexit 1\n",
        },
    )
    for name in ("aci-dep1", "aci-dep2"):
        write(
            pytester.path / name,
            {
                "aci-manifest.yml": (
                    f"name: example.com/{name}:1\naci:\n  dependencies:\n    - example.com/aci-base:1\n"
                ),
            },
        )
    result = run(pytester, home, "-n", "2", "-rA")
    result.assert_outcomes(failed=6)
    result.stdout.fnmatch_lines(["*aci-dep1*dependency example.com/aci-base:1*failed to build*"])


def test_dgr_init_then_dgr_test(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "aci-init"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([str(DGR), "-W", str(project), "init"], check=True, env=env)
    done = subprocess.run(
        [str(DGR), "-H", str(home), "-W", str(project), "test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_dgr_test_exit_code_and_install(home: Path, tmp_path: Path) -> None:
    project = write(
        tmp_path / "aci-inst",
        {
            "aci-manifest.yml": "name: example.com/aci-inst:1\n",
            "tests/a.bats": '@test "fails" {\n  false\n}\n',
        },
    )

    def dgr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DGR), "-H", str(home), "-W", str(project), *args],
            capture_output=True,
            text=True,
            timeout=600,
        )

    failed = dgr("test")
    assert failed.returncode == 1
    assert "fails" in failed.stdout
    refused = dgr("install", "-t")
    assert refused.returncode == 1
    assert not (tmp_path / "store" / "images").exists()
    (project / "tests" / "a.bats").write_text('@test "passes" {\n  true\n}\n')
    installed = dgr("install", "-t")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert len(list((tmp_path / "store" / "images").iterdir())) == 1


GIVEN_TEST = """
import os


def test_options_came_whole(dgr_image, request):
    assert os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw")  # a worker's session
    assert not [a for a in request.config.invocation_params.args if str(a).startswith("--dgr-")]
    assert dgr_image.read_file("/value.txt").strip() == "from-dgr"
"""


def test_dgr_test_gives_xdist_workers_its_options(home: Path, tmp_path: Path) -> None:
    """`dgr --set-env ... test -- -n 2`: the worker builds with the value, which no --dgr-*
    argument carried (the options go to pytest as an object, to workers in workerinput)."""
    project = write(
        tmp_path / "aci-given",
        {
            "aci-manifest.yml": "name: example.com/aci-given:1\n",
            "runlevels/build/10.value.sh": '#!/dgr/bin/busybox sh\necho "$VALUE" > /value.txt\n',
            "tests/test_given.py": GIVEN_TEST,
        },
    )
    done = subprocess.run(
        [
            str(DGR),
            "-H",
            str(home),
            "-W",
            str(project),
            "--set-env",
            "VALUE=from-dgr",
            "test",
            "--",
            "-n",
            "2",
        ],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


@pytest.mark.slow
def test_example_aci_hello(home: Path) -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [str(DGR), "-H", str(home), "-W", str(REPO / "examples" / "aci-hello"), "test"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "10 passed" in done.stdout


def test_the_test_image_is_built_by_its_own_item(
    pytester: pytest.Pytester, home: Path, xdist_args: list[str]
) -> None:
    """tests/ customising a test image: a `test-image` item builds it after `build` and
    before any container starts; when it fails, the image's build still passed, and the
    items that need a container fail with one line."""
    write(
        pytester.path / "aci-tested",
        {
            "aci-manifest.yml": "name: example.com/aci-tested:1\n",
            "tests/runlevels/build/10.marker.sh": "#!/dgr/bin/busybox sh\necho tested > /etc/marker\n",
            "tests/x.bats": '@test "the test image is there" {\n  [ "$(cat /etc/marker)" = tested ]\n}\n',
        },
    )
    result = run(pytester, home, "-rA", "-v", *xdist_args)
    out = result.stdout.str()
    assert result.ret == 0, out
    assert result.parseoutcomes()["passed"] == 4  # build, test-image, templates, the @test
    assert "PASSED aci-tested::test-image" in out
    assert "example.com/aci-tested-tests:1 built" in out

    broken = "#!/dgr/bin/busybox sh\necho 'no marker today'\nexit 3\n"
    (pytester.path / "aci-tested/tests/runlevels/build/10.marker.sh").write_text(broken)
    result = run(pytester, home, "-rA", *xdist_args)
    out = result.stdout.str()
    assert result.parseoutcomes() == {"passed": 2, "failed": 2}, out  # build, templates pass
    assert "PASSED aci-tested::build" in out and "FAILED aci-tested::test-image" in out
    assert "no marker today" in out and "build log" in out
    assert "build of the test image of aci-tested failed" in out
    assert "Traceback" not in out
