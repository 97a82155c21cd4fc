"""`dgr_image`'s structure checks (config, paths, commands) on a real busybox image."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_plugin import run, write

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

MANIFEST = """name: example.com/aci-www:1
aci:
  app:
    exec: [/dgr/bin/busybox, httpd, -f, -p, '8080', -h, /www]
    user: '33'
    group: '33'
    workingDirectory: /www
    environment: [{name: GREETING, value: hello}]
    ports: [{name: http, port: 8080}]
    mountPoints: [{name: data, path: /data}]
  annotations: [{name: team, value: web}]
"""

BUILD = """#!/dgr/bin/busybox sh
B=/dgr/bin/busybox
$B mkdir -p /www /data
echo "served page" > /www/index.html
$B chown 33:33 /www/index.html
$B chmod 640 /www/index.html
$B ln -s index.html /www/home.html
$B mkdir -p /opt/tool
printf '%s\\n' '#!/dgr/bin/busybox sh' 'echo "tool $1 in $PWD ($GREETING)"' 'echo oops >&2' 'exit ${2:-0}' \\
  > /opt/tool/run
$B chmod 4755 /opt/tool/run
"""

TESTS = """
def test_config(dgr_image):
    config = dgr_image.config
    assert config.cmd == ("/dgr/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www")
    assert config.entrypoint == ("/dgr/bin/start",)
    assert config.exec == config.entrypoint + config.cmd
    assert config.env["GREETING"] == "hello" and "PATH" in config.env
    assert config.user == "33:33"
    assert config.working_dir == "/www"
    assert config.ports == {"8080/tcp"}
    assert config.volumes == {"/data"}
    assert config.labels["team"] == "web"
    assert config.raw["rootfs"]["type"] == "layers"
    assert dgr_image.name.version == "1" and dgr_image.layers  # the build result's attributes


def test_paths(dgr_image):
    page = dgr_image.path("/www/index.html")
    assert (page.kind, page.uid, page.gid, page.owner) == ("file", 33, 33, "33:33")
    assert (page.mode, page.permissions, page.size) == (0o640, "-rw-r-----", 12)
    assert dgr_image.path("/www").kind == "directory"
    link = dgr_image.path("/www/home.html")
    assert (link.kind, link.target) == ("symlink", "index.html")
    tool = dgr_image.path("/opt/tool/run")
    assert (tool.mode, tool.permissions, tool.owner) == (0o4755, "-rwsr-xr-x", "0:0")
    assert dgr_image.exists("/dgr/bin/busybox") and not dgr_image.exists("/etc/nothing")


def test_file_content(dgr_image):
    assert dgr_image.read_file("/www/index.html") == "served page\\n"
    assert dgr_image.read_file("/www/home.html") == "served page\\n"


def test_commands(dgr_image):
    assert dgr_image.output(["/opt/tool/run", "a"]) == "tool a in /www (hello)\\noops\\n"
    failed = dgr_image.run(["/opt/tool/run", "b", "3"], env={"GREETING": "bye"})
    assert (failed.returncode, failed.output) == (3, "tool b in /www (bye)\\noops\\n")
    assert dgr_image.run(["/no/such/tool"]).returncode != 0
    # without prestart by default: the template is not rendered
    assert not dgr_image.exists("/etc/greeting")
    with_prestart = dgr_image.output(["/dgr/bin/busybox", "cat", "/etc/greeting"], prestart=True)
    assert with_prestart == "hello world\\n"


def test_missing_path(dgr_image):
    dgr_image.path("/etc/nothing")


def test_unreadable_missing_file(dgr_image):
    dgr_image.read_file("/etc/nothing")


def test_relative_path(dgr_image):
    dgr_image.read_file("www/index.html")


def test_failing_command(dgr_image):
    dgr_image.output(["/opt/tool/run", "c", "2"])
"""

OUTSIDE = """
def test_outside(dgr_image):
    dgr_image.config
"""


def test_structure_checks(pytester: pytest.Pytester, dgr_home: Path) -> None:
    write(
        pytester.path / "aci-www",
        {
            "aci-manifest.yml": MANIFEST,
            "runlevels/build/10.www.sh": BUILD,
            "attributes/a.yml": "default:\n  who: world\n",
            "templates/etc/greeting.tmpl": "hello {{ who }}\n",
            "tests/test_structure.py": TESTS,
        },
    )
    write(pytester.path, {"test_outside.py": OUTSIDE})
    result = run(pytester, dgr_home, "-rA", "-p", "no:xdist")
    lines = result.stdout.lines
    for name in ("test_config", "test_paths", "test_file_content", "test_commands"):
        assert f"PASSED aci-www/tests/test_structure.py::{name}" in lines, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "_* test_missing_path _*",
            "/etc/nothing does not exist in image example.com/aci-www:1",
            "_* test_unreadable_missing_file _*",
            "/etc/nothing does not exist in image example.com/aci-www:1",
            "_* test_relative_path _*",
            "'www/index.html' is not an absolute path — paths in the image start with /",
            "_* test_failing_command _*",
            "['/opt/tool/run', 'c', '2'] exited with 2 in image example.com/aci-www:1",
            "  | tool c in /www (hello)",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*at setup of test_outside*", "dgr_image is only available to tests inside an image folder*"]
    )
    result.assert_outcomes(passed=6, failed=4, errors=1)
    assert "Traceback" not in result.stdout.str() and "dgr/structure.py" not in result.stdout.str()
