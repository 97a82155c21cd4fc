"""dgr as an ordinary user (rootless): the same commands, in a user namespace of its own.

The user and its subordinate range come from tests/support/rootless.py (the documented
setup step); everything runs for real through runuser, newuidmap, unshare and bwrap.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dgr.leftovers import make_dir
from tests.support.rootless import RootlessUser, ensure_rootless_user

pytestmark = pytest.mark.integration

CHOWN_SCRIPT = "#!/dgr/bin/busybox sh\necho served > /www\n/dgr/bin/busybox chown 33:33 /www\n"


@pytest.fixture(scope="module")
def user() -> Iterator[RootlessUser]:
    found = ensure_rootless_user()
    if isinstance(found, str):
        pytest.skip(f"rootless tests: {found}")
    yield found
    found.cleanup()


@pytest.fixture
def workdir(user: RootlessUser) -> Iterator[Path]:
    """A folder of the user's (not under pytest's 0700 root-owned temporary folder)."""
    path = make_dir("/tmp", "dgr-rootless-")  # a killed session's goes at the next
    os.chown(path, user.uid, user.gid)
    yield path
    shutil.rmtree(path)  # as root: the layers hold ids of the user's range


def _user_processes(user: RootlessUser) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        start = user.subuids.start
        if entry.isdigit() and (uid == user.uid or start <= uid < start + user.subuids.count):
            found.append(int(entry))
    return found


def test_ordinary_user_builds_tests_runs_and_installs(user: RootlessUser, workdir: Path) -> None:
    home = workdir / "home"
    home.mkdir()
    os.chown(home, user.uid, user.gid)

    def dgr(*args: str) -> str:
        done = user.dgr(*args, cwd=workdir, home=home)
        assert done.returncode == 0, f"dgr {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    dgr("-W", "aci-hello", "init")
    script = workdir / "aci-hello" / "runlevels" / "build" / "20.chown.sh"
    script.write_text(CHOWN_SCRIPT)
    os.chown(script, user.uid, user.gid)
    dgr("-W", "aci-hello", "build")
    dgr("-W", "aci-hello", "try")
    assert "passed" in dgr("-W", "aci-hello", "test")
    assert "I run at container start" in dgr("-W", "aci-hello", "run")
    dgr("-W", "aci-hello", "install")
    target = workdir / "aci-hello" / "target"

    # chowned inside to 33: in the image 33, on disk the user's subordinate id for 33
    with tarfile.open(target / "image.aci") as aci:
        www = aci.getmember("rootfs/www")
        owners = {(m.uid, m.gid) for m in aci.getmembers()}
    assert (www.uid, www.gid) == (33, 33)
    assert owners == {(0, 0), (33, 33)}  # the user's own uid shows as root, never as itself
    assert os.lstat(target / "layer" / "www").st_uid == user.subuids.start + 32
    assert os.lstat(target / "layer" / "etc").st_uid == user.uid  # container root = the user

    # the store and the cache are the user's XDG folders
    assert any((home / ".local/share/dgr/store/images").iterdir())
    assert (home / ".cache/dgr/internals").is_dir()

    # pytest itself, plain and with xdist, enters the namespace through the plugin
    for extra in ((), ("-n", "2")):
        done = user.run(
            [*user.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, "aci-hello"],
            cwd=workdir,
            home=home,
        )
        assert done.returncode == 0 and " passed" in done.stdout, done.stdout + done.stderr

    dgr("-W", "aci-hello", "clean")  # removes files of the subordinate range
    assert not target.exists()
    deadline = time.monotonic() + 10  # sandboxes killed with their parent exit asynchronously
    while _user_processes(user) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _user_processes(user) == []
    with open("/proc/self/mountinfo") as mounts:
        assert str(workdir) not in mounts.read()


def test_user_without_a_range_gets_one_clear_message(user: RootlessUser, workdir: Path) -> None:
    nobody = replace(user, name="nobody")  # a user with no subordinate range on any host
    project = workdir / "aci-x"
    project.mkdir()
    (project / "aci-manifest.yml").write_text("name: example.com/aci-x:1\n")
    os.chmod(workdir, 0o777)
    done = nobody.dgr("-W", str(project), "build", cwd=workdir, home=workdir)
    assert done.returncode == 1, done.stderr
    assert "user nobody has no subordinate id range" in done.stderr
    assert "/etc/subuid" in done.stderr and "Traceback" not in done.stderr
    assert not (project / "target" / "image.aci").exists()
