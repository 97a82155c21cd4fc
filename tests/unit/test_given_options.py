"""`dgr test` hands its BuildOptions to pytest whole (pytest_dgr/options.py): no --dgr-*
argument on pytest's command line; the same options for xdist workers through JSON."""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path

import pytest

from dgr.options import BuildOptions
from dgr.project import open_project
from dgr.testrun import pytest_arguments
from pytest_dgr.options import GivenOptions

pytest_plugins = ["pytester"]


def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(exist_ok=True)
    (path / "config.yml").write_text(f"storePath: {tmp_path / 'store'}\ninsecureOptions: [http]\n")
    return path


def test_options_travel_to_a_worker_as_json_and_come_back_equal(tmp_path: Path) -> None:
    options = BuildOptions.from_settings(
        home=str(home(tmp_path)),
        targets_root=str(tmp_path / "targets"),
        set_env={"VALUE": "a=b", "EMPTY": ""},
        log_level=logging.DEBUG,
        keep=True,
        shell_on_failure=True,
        shell_after="build",
        timeout=30.0,
        script_timeout=5.0,
    )
    sent = json.loads(json.dumps(options.to_json()))
    assert BuildOptions.from_json(sent) == options


def test_every_build_option_is_sent(tmp_path: Path) -> None:
    sent = set(BuildOptions.from_settings(home=None, targets_root=None, set_env={}, log_level=20).to_json())
    # config: read again from the home sent; echo: follows the log level; building: one build's own
    made_again = {"config", "echo", "building"}
    assert {f.name for f in fields(BuildOptions)} <= sent | made_again


def test_dgr_test_gives_pytest_no_dgr_argument(tmp_path: Path) -> None:
    options = BuildOptions.from_settings(
        home=str(home(tmp_path)), targets_root=None, set_env={"A": "1"}, log_level=logging.DEBUG, keep=True
    )
    image = tmp_path / "aci-args"
    image.mkdir()
    (image / "aci-manifest.yml").write_text("name: example.com/aci-args:1\n")
    argv = pytest_arguments(open_project(image, options), ["-x"])
    # pytest's cache in the target (the project's files are build inputs)
    assert argv == [str(image), "-o", f"cache_dir={image / 'target' / 'pytest-cache'}", "-x"]
    pod = tmp_path / "pod-args"
    pod.mkdir()
    (pod / "pod-manifest.yml").write_text("name: example.com/pod-args:1\n")
    assert pytest_arguments(open_project(pod, options), ["-x"]) == [str(pod), "-x"]


def test_given_options_are_the_sessions(pytester: pytest.Pytester, tmp_path: Path) -> None:
    options = BuildOptions.from_settings(
        home=str(home(tmp_path)), targets_root=None, set_env={"VALUE": "given"}, log_level=logging.DEBUG
    )
    pytester.makepyfile(
        test_given="""
            from pytest_dgr.session import settings

            def test_given(request):
                found = settings(request.config).options
                assert found.set_env == {"VALUE": "given"} and found.echo
                assert found.config.home.name == "home"
            """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", plugins=[GivenOptions(options)])
    result.assert_outcomes(passed=1)


def test_dgr_build_options_after_the_dashes_are_refused(pytester: pytest.Pytester, tmp_path: Path) -> None:
    options = BuildOptions.from_settings(
        home=str(home(tmp_path)), targets_root=None, set_env={}, log_level=20
    )
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--dgr-keep", "--dgr-set-env=A=1", plugins=[GivenOptions(options)]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*dgr test: --dgr-set-env, --dgr-keep after -- (give dgr's own*"])
