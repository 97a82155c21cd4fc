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

from filelock import FileLock

from dgr.leftovers import make_dir
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
    code: Path  # the readable copy of the code (see _readable_code), removed by cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.code, ignore_errors=True)

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


def _readable_code() -> Path:
    """This checkout's packages and the venv's, where the user can read them: the checkout
    may sit in a folder only root may enter (/root). Hard links when the filesystem allows
    (nothing copied), else copies; the caller removes the folder."""
    code = make_dir("/var/tmp", "dgr-rootless-code-")  # a killed session's goes at the next
    for package in ("dgr", "pytest_dgr"):
        shutil.copytree(REPO / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    site = sysconfig.get_paths()["purelib"]
    if subprocess.run(["cp", "-al", site, str(code / "site")], capture_output=True).returncode != 0:
        shutil.rmtree(code / "site", ignore_errors=True)
        subprocess.run(["cp", "-a", site, str(code / "site")], check=True)
    code.chmod(0o755)
    return code


def _python_for(user: str, code: Path) -> tuple[tuple[str, ...], dict[str, str]] | str:
    """How `user` runs this checkout's dgr: an interpreter of the venv's Python version that
    the user may execute, with the packages where the user may read them; or why not."""
    probe = ["runuser", "-u", user, "--"]
    same = f"import sys; sys.exit(sys.version_info[:2] != {tuple(sys.version_info[:2])})"
    candidates = [os.path.realpath(sys.executable), "/usr/bin/python3"]
    python = next(
        (
            c
            for c in candidates
            if subprocess.run([*probe, c, "-c", same], capture_output=True, cwd="/").returncode == 0
        ),
        None,
    )
    if python is None:
        return (
            f"{user} can run no Python {sys.version_info[0]}.{sys.version_info[1]} ({', '.join(candidates)})"
        )
    env = {"PYTHONPATH": f"{code}:{code / 'site'}"}
    check = [
        *probe,
        "env",
        f"PYTHONPATH={env['PYTHONPATH']}",
        python,
        "-c",
        "import dgr, jinja2, yaml, filelock",
    ]
    done = subprocess.run(check, capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        return f"{user} cannot import dgr with {python}: {done.stderr.strip()[-200:]}"
    return (python,), env


def ensure_rootless_user() -> RootlessUser | str:
    """The test user, created and given a range if needed; or why it cannot be."""
    if os.geteuid() != 0:
        return "creating the rootless test user needs root"
    for tool in ("useradd", "usermod", "runuser", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (packages passwd, util-linux, uidmap)"
    with FileLock("/var/tmp/dgr-rootless-user.lock"):  # xdist workers set it up one at a time
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
    code = _readable_code()
    found = _python_for(USER, code)
    if isinstance(found, str):
        shutil.rmtree(code, ignore_errors=True)
        return found
    python, env = found
    return RootlessUser(USER, entry.pw_uid, entry.pw_gid, subuids, python, env, code)
