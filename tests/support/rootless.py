"""An ordinary user with a subordinate id range, for the rootless tests (docs/security.md).

The setup step the tests document and take themselves, as root: create the user
`dgr-rootless` (`useradd --create-home`) when missing, and give it 65536 subordinate uids and
gids above every range already given (`usermod --add-subuids/--add-subgids`) when it has none.
Both are idempotent; the user stays for later runs. Hosts where this cannot be done skip the
tests with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dgr.userns import SIZE, SUBGID, SUBUID, SubRange, subordinate_range

USER = "dgr-rootless"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RootlessUser:
    name: str
    uid: int
    gid: int
    subuids: SubRange
    python: tuple[str, ...]  # how the user starts this checkout's dgr: interpreter (+ env)
    env: Mapping[str, str]

    def run(
        self, argv: Sequence[str], *, cwd: Path, home: Path, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` as the user (runuser), with `home` as HOME and XDG folders."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            **self.env,
        }
        command = ["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items())]
        return subprocess.run(
            [*command, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )

    def dgr(self, *args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
        return self.run([*self.python, "-m", "dgr.cli", *args], cwd=cwd, home=home)


def _free_start() -> int:
    end = 100000
    for file in (SUBUID, SUBGID):
        for line in file.read_text().splitlines() if file.exists() else []:
            fields = line.split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                end = max(end, int(fields[1]) + int(fields[2]))
    return end


def _python_for(user: str) -> tuple[tuple[str, ...], dict[str, str]] | str:
    """This checkout's dgr as `user` can run it: the venv's interpreter, or the system's one
    with the venv's packages (a venv made from an interpreter under /root, as pyenv's, cannot
    be run by another user); a reason when neither works."""
    probe = ["runuser", "-u", user, "--"]
    if (
        subprocess.run([*probe, sys.executable, "-c", "import dgr"], capture_output=True, cwd="/").returncode
        == 0
    ):
        return (sys.executable,), {}
    system = shutil.which("python3", path="/usr/bin")
    if system is None:
        return "no /usr/bin/python3 for the rootless user"
    site = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": f"{REPO}:{site}"}
    check = [
        *probe,
        "env",
        f"PYTHONPATH={env['PYTHONPATH']}",
        system,
        "-c",
        "import dgr, jinja2, yaml, filelock",
    ]
    if subprocess.run(check, capture_output=True, cwd="/").returncode != 0:
        return f"{user} can run neither {sys.executable} nor {system} with this checkout's packages"
    return (system,), env


def ensure_rootless_user() -> RootlessUser | str:
    """The test user, created and given a range if needed; or why it cannot be."""
    if os.geteuid() != 0:
        return "creating the rootless test user needs root"
    for tool in ("useradd", "usermod", "runuser", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (packages passwd, util-linux, uidmap)"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    entry = pwd.getpwnam(USER)
    if (
        subordinate_range(SUBUID, USER, entry.pw_uid) is None
        or subordinate_range(SUBGID, USER, entry.pw_uid) is None
    ):
        start = _free_start()
        ids = f"{start}-{start + SIZE - 1}"
        subprocess.run(["usermod", "--add-subuids", ids, "--add-subgids", ids, USER], check=True)
    subuids = subordinate_range(SUBUID, USER, entry.pw_uid)
    assert subuids is not None
    found = _python_for(USER)
    if isinstance(found, str):
        return found
    python, env = found
    return RootlessUser(USER, entry.pw_uid, entry.pw_gid, subuids, python, env)
