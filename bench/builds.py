"""Build speed (SPEC §11): cold build vs `buildah bud`, no-change rebuild, `pytest -n 2` vs `-n 0`.

Three benchmarks, each printing ratios measured side by side in one run (medians over
--runs, the variants interleaved in every round), with the machine and the date:

  cold     a cold `dgr build` (fresh target folder) of two small projects, the `dgr init`
           project and `small` (busybox, a few files, a build script), against `buildah bud`
           of the equivalent Containerfile (FROM scratch, COPY a static busybox, RUN the same
           scripts, COPY the same files) with a private storage. dgr is timed twice: with its
           machine cache warm (the internals bundle and the busybox builder root, built once
           per machine) and first-ever, with an empty cache folder. buildah is timed with an
           initialised storage (overlay and vfs drivers) and with a fresh, empty storage.
  rebuild  `dgr build` with nothing changed against the cold build of the same project, from
           the CLI (what a user waits for) and from the library in a warm process (what the
           pytest plugin pays per image).
  xdist    `pytest -n 0` against `pytest -n 2` over 16 generated busybox-only images (each
           with a template, a build script, two bats tests and a wait.sh), cold targets each
           time, the machine cache warm. A CPU-bound control (the same work in one process
           twice vs in two processes at once) measures how much of two CPUs this run really
           had; per-item durations and the worker of each item show where the time goes.

    .venv/bin/python bench/builds.py [--quick] [--runs N] [--only cold,rebuild,xdist]

Everything (dgr's cache and store, targets, buildah's storage, run state and temp files)
lives under one temporary folder that is unmounted and removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dgr
from dgr.init import init_project

REPO = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
DGR = [str(PYTHON.parent / "dgr")]  # the console script next to this interpreter (.venv/bin/dgr)
FUNCTIONS_SH = Path(dgr.__file__).parent / "data" / "functions.sh"
BUSYBOX = Path(shutil.which("busybox") or "/bin/busybox")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
BUILDAH_ISOLATION = "chroot"

SCRIPT_SHEBANG = "#!/dgr/bin/busybox sh\n"
SMALL_BUILD_SCRIPT = (
    SCRIPT_SHEBANG
    + """set -e
mkdir -p /srv/www /var/log/app /etc/app
for page in index about contact; do
  echo "<html><body>$page</body></html>" > /srv/www/$page.html
done
echo "built $(date -u +%Y-%m-%d)" > /etc/app/build-info
chmod 0755 /srv/www
ln -sf /etc/app/app.conf /etc/app.conf
"""
)
SMALL_FILES = {
    "aci-manifest.yml": (
        "name: bench.example.com/small:1\n"
        "aci:\n  app:\n    exec: [/dgr/bin/busybox, httpd, -f, -p, '8080', -h, /srv/www]\n"
    ),
    "files/etc/app/app.conf": "listen = 8080\nroot = /srv/www\nlog = /var/log/app\n",
    "files/etc/motd": "Welcome to a small benchmark image\n",
    "files/etc/app/users.list": "".join(f"user{i}\n" for i in range(50)),
    "files/srv/www/robots.txt": "User-agent: *\nDisallow:\n",
    "runlevels/build/10.setup.sh": SMALL_BUILD_SCRIPT,
}


# --- helpers ---------------------------------------------------------------------------------


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def run_checked(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout[-4000:]}")
    return proc.stdout


def timed(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    run_checked(argv, env=env, cwd=cwd)
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def machine() -> str:
    model = "?"
    try:
        for line in run_checked(["lscpu"]).splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, SystemExit):
        pass
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"date: {datetime.date.today().isoformat()}; machine: {model} (`lscpu` model name), "
        f"{os.cpu_count()} CPUs (`nproc`), Linux {platform.release()}; load average (1/5/15 min) "
        f"at the time: {load}"
    )


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root` in /proc/self/mountinfo, deepest first."""
    prefix = os.path.realpath(root)
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_and_remove(root: Path) -> None:
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Home:
    """A dgr configuration folder with its own cache and store."""

    root: Path

    @property
    def path(self) -> Path:
        return self.root / "home"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def create(self) -> Home:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.yml").write_text(
            f"cachePath: {self.cache}\nstorePath: {self.root / 'store'}\n", encoding="utf-8"
        )
        return self

    def dgr(self, project: Path, target_root: Path, *args: str) -> list[str]:
        return [*DGR, "-H", str(self.path), "-W", str(project), "-p", str(target_root), *args]


# --- buildah ---------------------------------------------------------------------------------


@dataclass
class Buildah:
    """buildah with storage, run state, temp files and containers.conf under `root`."""

    root: Path
    driver: str
    counter: int = 0

    def __post_init__(self) -> None:
        for sub in ("storage", "run", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "containers.conf").write_text(CONTAINERS_CONF, encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "BUILDAH_ISOLATION": BUILDAH_ISOLATION,
            "TMPDIR": str(self.root / "tmp"),
        }

    def base(self) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            self.driver,
        ]

    def bud_argv(self, context: Path) -> list[str]:
        self.counter += 1
        return [
            *self.base(),
            "bud",
            "--isolation",
            BUILDAH_ISOLATION,
            "--layers=false",
            "-q",
            "-t",
            f"localhost/dgr-bench:{self.counter}",
            str(context),
        ]

    def bud(self, context: Path) -> float:
        return timed(self.bud_argv(context), env=self.env)

    def cleanup(self) -> None:
        if (self.root / "storage").exists():
            subprocess.run([*self.base(), "rm", "--all"], env=self.env, capture_output=True, check=False)
            subprocess.run(
                [*self.base(), "rmi", "--all", "--force"], env=self.env, capture_output=True, check=False
            )
        unmount_and_remove(self.root)


def containerfile_context(project: Path, context: Path) -> Path:
    """The buildah build context equivalent to a dgr project: busybox, scripts, files."""
    shutil.copytree(project, context, ignore=shutil.ignore_patterns("target", ".git*", "tests"))
    shutil.copy2(BUSYBOX, context / "busybox")
    lines = ["FROM scratch", "COPY busybox /bin/busybox"]
    if any("functions.sh" in p.read_text(errors="replace") for p in project.rglob("*.sh")):
        shutil.copy2(FUNCTIONS_SH, context / "functions.sh")  # the helpers dgr's scripts source
        lines.append("COPY functions.sh /dgr/bin/functions.sh")

    def run_level(name: str, where: str) -> None:
        folder = project / "runlevels" / name
        if folder.is_dir() and any(folder.iterdir()):
            lines.append(
                'RUN ["/bin/busybox", "sh", "-c", '
                f'"for s in {where}/{name}/*; do /bin/busybox sh $s || exit 1; done"]'
            )

    if (project / "runlevels").is_dir():
        lines.append("COPY runlevels/ /dgr/runlevels/")
    # dgr runs builder, build, then copies attributes/templates/files, then build-late.
    run_level("builder", "/dgr/runlevels")
    run_level("build", "/dgr/runlevels")
    if (project / "attributes").is_dir():
        lines.append("COPY attributes/ /dgr/attributes/")
    if (project / "templates").is_dir():
        lines.append("COPY templates/ /dgr/templates/")
    if (project / "files").is_dir():
        lines.append("COPY files/ /")
    run_level("build-late", "/dgr/runlevels")
    (context / "Containerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return context


# --- cold build and no-change rebuild ----------------------------------------------------------


@dataclass
class ProjectTimes:
    name: str
    containerfile: str = ""
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def med(self, key: str) -> float:
        return median(self.samples[key])


def make_projects(root: Path) -> dict[str, Path]:
    init = root / "projects" / "init"
    init_project(init)
    small = root / "projects" / "small"
    write_files(small, SMALL_FILES)
    return {"init": init, "small": small}


def library_no_change(project: Path, home: Home, target_root: Path, runs: int) -> list[float]:
    """No-change builds through `dgr.build.build` in this (warm) process."""
    from dgr.build import build
    from dgr.config import load_config
    from dgr.log import setup
    from dgr.options import BuildOptions

    setup(40)
    options = BuildOptions(config=load_config(home.path), targets_root=target_root)
    build(project, options)  # builds or finds it up to date; warms imports
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = build(project, options)
        times.append(time.perf_counter() - start)
        assert result.up_to_date
    return times


def bench_builds(root: Path, runs: int, *, cold: bool = True) -> list[ProjectTimes]:
    """dgr's cold and no-change builds; with `cold`, also first-ever builds and buildah's."""
    home = Home(root / "warm").create()
    projects = make_projects(root)
    results = []
    buildahs = (
        {
            "buildah overlay": Buildah(root / "bah-overlay", "overlay"),
            "buildah vfs": Buildah(root / "bah-vfs", "vfs"),
        }
        if cold
        else {}
    )
    try:
        for name, project in projects.items():
            times = ProjectTimes(name)
            context = containerfile_context(project, root / "contexts" / name)
            times.containerfile = (context / "Containerfile").read_text(encoding="utf-8")
            # warm up: dgr's machine cache, buildah's storage, the page cache
            run_checked(home.dgr(project, root / "targets" / "warmup", "build"))
            for b in buildahs.values():
                b.bud(context)
            for i in range(runs):
                target = root / "targets" / f"{name}-{i}"
                times.samples["dgr cold"].append(timed(home.dgr(project, target, "build")))
                times.samples["dgr no-change"].append(timed(home.dgr(project, target, "build")))
                times.samples["dgr --version"].append(timed([*DGR, "--version"]))
                for key, b in buildahs.items():
                    times.samples[key].append(b.bud(context))
                shutil.rmtree(target)
                if not cold:
                    continue
                first = Home(root / f"first-{name}-{i}").create()
                times.samples["dgr first-ever"].append(
                    timed(first.dgr(project, root / "targets" / f"{name}-first-{i}", "build"))
                )
                shutil.rmtree(first.root)
                fresh = Buildah(root / f"bah-fresh-{name}-{i}", "overlay")
                try:
                    times.samples["buildah overlay, fresh storage"].append(fresh.bud(context))
                finally:
                    fresh.cleanup()
                shutil.rmtree(root / "targets" / f"{name}-first-{i}")
            times.samples["dgr no-change (library)"] = library_no_change(
                project, home, root / "targets" / "warmup", max(runs, 5)
            )
            results.append(times)
            print(f"  {name}: done", file=sys.stderr)
    finally:
        for b in buildahs.values():
            b.cleanup()
    return results


def report_cold(results: list[ProjectTimes], runs: int) -> str:
    out = [f"Medians of {runs} runs, interleaved.", ""]
    out.append(
        "| project | dgr cold (cache warm) | dgr first-ever (empty cache) | buildah overlay "
        "| buildah vfs | buildah overlay, fresh storage | dgr cold / fastest buildah "
        "| dgr first-ever / buildah fresh |"
    )
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t in results:
        fastest = min(t.med("buildah overlay"), t.med("buildah vfs"))
        out.append(
            f"| {t.name} | {ms(t.med('dgr cold'))} | {ms(t.med('dgr first-ever'))} "
            f"| {ms(t.med('buildah overlay'))} | {ms(t.med('buildah vfs'))} "
            f"| {ms(t.med('buildah overlay, fresh storage'))} "
            f"| {t.med('dgr cold') / fastest:.2f} "
            f"| {t.med('dgr first-ever') / t.med('buildah overlay, fresh storage'):.2f} |"
        )
    for t in results:
        lines = ["    " + line for line in t.containerfile.splitlines()]
        out += ["", f"Containerfile of `{t.name}`:", "", *lines]
    return "\n".join(out)


def report_rebuild(results: list[ProjectTimes], runs: int) -> str:
    out = [f"Medians of {runs} runs (library: of {max(runs, 5)}), interleaved with the cold builds.", ""]
    out.append(
        "| project | dgr cold | no-change (CLI) | CLI / cold | `dgr --version` (CLI floor) "
        "| floor / cold | no-change (library, warm process) | library / cold |"
    )
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t in results:
        cold = t.med("dgr cold")
        cli, floor, lib = t.med("dgr no-change"), t.med("dgr --version"), t.med("dgr no-change (library)")
        out.append(
            f"| {t.name} | {ms(cold)} | {ms(cli)} | {cli / cold:.0%} | {ms(floor)} | {floor / cold:.0%} "
            f"| {ms(lib)} | {lib / cold:.0%} |"
        )
    return "\n".join(out)


# --- pytest -n 2 over 16 images ---------------------------------------------------------------

XDIST_IMAGES = 16
DURATION = re.compile(r"^\s*([0-9.]+)s (setup|call|teardown)\s+(\S.*?)\s*$")
WORKER = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] \w+ (\S.*?)\s*$")
BATS = """#!/usr/bin/env bats

@test "the template is rendered at start" {{
  [ "$(cat /etc/app/greeting)" = "hello {n}" ]
}}

@test "the build script ran" {{
  [ "$(cat /etc/app/built)" = "built {n}" ]
}}
"""


def image_project(n: int) -> dict[str, str]:
    return {
        "aci-manifest.yml": f"name: bench.example.com/image{n:02d}:1\n",
        "attributes/attributes.yml": f"default:\n  greeting: hello {n}\n",
        "templates/etc/app/greeting.tmpl": "{{ greeting }}\n",
        "files/etc/app/file": f"file {n}\n",
        "runlevels/build/10.build.sh": (
            f"{SCRIPT_SHEBANG}set -e\nmkdir -p /etc/app\necho 'built {n}' > /etc/app/built\n"
        ),
        "tests/wait.sh": "#!/bin/sh\ntest -f /etc/app/greeting\n",
        "tests/image.bats": BATS.format(n=n),
    }


@dataclass
class PytestRun:
    wall: float
    busy: float  # CPUs busy on the whole machine during the run (this run and anything else)
    durations: dict[str, float]  # nodeid -> setup + call + teardown
    workers: dict[str, str]  # nodeid -> gwN

    @property
    def work(self) -> float:
        return sum(self.durations.values())

    def kind(self, suffix: str) -> float:
        return sum(d for node, d in self.durations.items() if node.endswith(suffix))

    @property
    def busiest(self) -> float:
        """The item durations of the busiest worker (all of them without xdist)."""
        per: dict[str, float] = defaultdict(float)
        for node, d in self.durations.items():
            per[self.workers.get(node, "main")] += d
        return max(per.values())

    def images_per_worker(self) -> str:
        per: dict[str, int] = defaultdict(int)
        for node, worker in self.workers.items():
            if node.endswith("::build"):
                per[worker] += 1
        return "/".join(str(per[w]) for w in sorted(per))


def pytest_argv(root: Path, home: Home, workers: int, *extra: str) -> list[str]:
    return [
        str(PYTHON),
        "-m",
        "pytest",
        "-p",
        "pytest_dgr",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(root),
        "--dgr-home",
        str(home.path),
        "-n",
        str(workers),
        *extra,
        "images",
    ]


def measured(
    argv: Sequence[str], cwd: Path, *, expect: int = 0, cpu: bool = False
) -> tuple[float, float, str]:
    """(wall, CPU, output) of a command. With `cpu`, the command runs under `perf stat` and CPU
    is its task-clock, which counts every descendant (also the container processes killed at
    teardown, which the rusage of waited-for children misses); perf slows the command down, so
    timed runs go without it (CPU is then 0)."""
    with tempfile.NamedTemporaryFile("r", suffix=".perf") as stat:
        wrapper = ["perf", "stat", "-x", ",", "-e", "task-clock", "-o", stat.name, "--"] if cpu else []
        start = time.perf_counter()
        proc = subprocess.run(
            [*wrapper, *argv],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        if proc.returncode != expect:
            command = " ".join(argv)
            raise SystemExit(f"unexpected outcome ({proc.returncode}) of {command}:\n{proc.stdout[-3000:]}")
        task_clock = 0.0
        for line in stat.read().splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2].startswith("task-clock"):
                task_clock = float(fields[0]) / 1000
    return wall, task_clock, proc.stdout


def machine_busy() -> float:
    """CPU-seconds the whole machine has spent not idle since boot (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # without guest times (in user)


def perf_works() -> bool:
    if shutil.which("perf") is None:
        return False
    probe = subprocess.run(
        ["perf", "stat", "-x", ",", "-e", "task-clock", "--", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def run_pytest(
    root: Path, home: Home, workers: int, target: Path, *, cpu: bool = False
) -> tuple[PytestRun, float]:
    argv = pytest_argv(
        root, home, workers, "--dgr-target", str(target), "-v", "--durations=0", "--durations-min=0"
    )
    before = machine_busy()
    wall, task_clock, output = measured(argv, root, cpu=cpu)
    busy = (machine_busy() - before) / wall
    durations: dict[str, float] = defaultdict(float)
    where: dict[str, str] = {}
    for line in output.splitlines():
        m = DURATION.match(line)
        if m:
            durations[m.group(3)] += float(m.group(1))
        m = WORKER.match(line)
        if m:
            where[m.group(2)] = m.group(1)
    passed = re.search(r"(\d+) passed", output)
    if not passed or int(passed.group(1)) != 4 * XDIST_IMAGES:
        raise SystemExit(f"unexpected pytest outcome:\n{output[-3000:]}")
    return PytestRun(wall, busy, dict(durations), where), task_clock


def empty_session(root: Path, home: Home, workers: int, *, cpu: bool = False) -> tuple[float, float]:
    """(wall, CPU) of a session that starts its workers and collects the images but runs no item.

    Every item is deselected (`-k`): unlike `--collect-only`, which xdist runs without workers,
    this starts them, so the difference between `-n 0` and `-n 2` is xdist's fixed cost.
    """
    argv = pytest_argv(root, home, workers, "-q", "-k", "no_item_has_this_name")
    wall, task_clock, _ = measured(argv, root, expect=5, cpu=cpu)  # 5: no test ran
    return wall, task_clock


def cli_builds(home: Home, projects: Sequence[Path], target_root: Path, workers: int) -> float:
    """Wall time of a cold `dgr build` of every project, `workers` at a time (no pytest)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda project: run_checked(home.dgr(project, target_root, "build")), projects))
    wall = time.perf_counter() - start
    shutil.rmtree(target_root)
    return wall


CONTROL = "x = 0\nfor i in range({n}):\n    x += i * i\n"


def cpu_control(loops: int) -> float:
    """How much faster two processes at once do the same CPU work than one process twice."""
    argv = [str(PYTHON), "-c", CONTROL.format(n=loops)]
    start = time.perf_counter()
    for _ in range(2):
        subprocess.run(argv, check=True)
    serial = time.perf_counter() - start
    start = time.perf_counter()
    procs = [subprocess.Popen(argv) for _ in range(2)]
    for proc in procs:
        proc.wait()
    return serial / (time.perf_counter() - start)


def bench_xdist(root: Path, runs: int) -> str:
    home = Home(root / "xdist").create()
    projects = []
    for n in range(1, XDIST_IMAGES + 1):
        projects.append(root / "images" / f"image{n:02d}")
        write_files(projects[-1], image_project(n))
    targets = root / "targets-xdist"
    run_pytest(root, home, 0, targets / "warmup")  # warms the machine cache (internals, bats)
    samples: dict[int, list[PytestRun]] = {0: [], 2: []}
    control: list[float] = []
    empty: dict[int, list[float]] = {0: [], 2: []}
    builds: dict[int, list[float]] = {1: [], 2: []}
    for i in range(runs):
        order = (0, 2) if i % 2 == 0 else (2, 0)
        for workers in order:
            target = targets / f"n{workers}-{i}"
            samples[workers].append(run_pytest(root, home, workers, target)[0])
            shutil.rmtree(target)
        control.append(cpu_control(6_000_000))
        for workers in (0, 2):
            empty[workers].append(empty_session(root, home, workers)[0])
        for workers in (1, 2):
            builds[workers].append(cli_builds(home, projects, targets / f"cli-{workers}-{i}", workers))
        print(f"  xdist round {i + 1}/{runs} done", file=sys.stderr)
    cpu: dict[int, tuple[float, float]] = {}
    if perf_works():  # one more run of each under perf, untimed, for CPU time
        for workers in (0, 2):
            cpu[workers] = (
                run_pytest(root, home, workers, targets / f"perf-{workers}", cpu=True)[1],
                empty_session(root, home, workers, cpu=True)[1],
            )

    def both(value: Callable[[PytestRun], float]) -> tuple[float, float]:
        return median([value(r) for r in samples[0]]), median([value(r) for r in samples[2]])

    def bats(r: PytestRun) -> float:
        return r.work - r.kind("::build") - r.kind("::templates")

    wall0, wall2 = both(lambda r: r.wall)
    rows = [
        ("wall time", wall0, wall2),
        ("sum of item durations (setup + call + teardown)", *both(lambda r: r.work)),
        ("  of which `build` items", *both(lambda r: r.kind("::build"))),
        ("  of which `templates` items", *both(lambda r: r.kind("::templates"))),
        ("  of which bats items (container start, wait.sh, bats, stop)", *both(bats)),
        ("busiest worker's item durations", *both(lambda r: r.busiest)),
        ("wall time outside the busiest worker's items", *both(lambda r: r.wall - r.busiest)),
        ("session running no item (all deselected), wall time", median(empty[0]), median(empty[2])),
    ]
    busy0, busy2 = both(lambda r: r.busy)
    if cpu:
        rows += [
            ("CPU time (perf task-clock, one extra run)", cpu[0][0], cpu[2][0]),
            ("CPU time of the session running no item (perf)", cpu[0][1], cpu[2][1]),
        ]
    out = [
        f"Medians of {runs} runs of each, interleaved (order alternating), {XDIST_IMAGES} images, "
        f"{4 * XDIST_IMAGES} items; targets cold every time, dgr's machine cache warm.",
        "",
        f"- speedup `-n 2` over `-n 0`: **{wall0 / wall2:.2f}x** (target: at least 1.8x)",
        f"- control, CPU-bound (one Python loop twice in one process vs in two processes at once): "
        f"{median(control):.2f}x, the parallelism the machine actually gave this run",
        f"- control, dgr without pytest ({XDIST_IMAGES} cold `dgr build` CLI runs, one at a time vs two "
        f"at a time): {median(builds[1]) / median(builds[2]):.2f}x "
        f"({median(builds[1]):.2f} s vs {median(builds[2]):.2f} s)",
        f"- images per worker with `-n 2` (`build` items): {samples[2][-1].images_per_worker()}",
        "",
        "| | `-n 0` | `-n 2` | `-n 0` / `-n 2` |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, a, b in rows:
        out.append(f"| {label} | {a:.2f} s | {b:.2f} s | {a / b:.2f} |")
    out.append(
        f"| CPUs busy during the run, whole machine (/proc/stat) | {busy0:.2f} | {busy2:.2f} "
        f"| {busy0 / busy2:.2f} |"
    )
    return "\n".join(out)


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs instead of --runs")
    parser.add_argument("--runs", type=int, default=7, help="runs of each variant (default 7)")
    parser.add_argument(
        "--only", default="cold,rebuild,xdist", help="comma-separated: cold, rebuild, xdist (default: all)"
    )
    args = parser.parse_args(argv)
    runs = 3 if args.quick else args.runs
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = parts - {"cold", "rebuild", "xdist"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    for tool in ("buildah", "bwrap"):
        if shutil.which(tool) is None and (tool == "bwrap" or parts & {"cold"}):
            parser.error(f"{tool} is needed")
    # a short path: overlay's and buildah's run-state paths have length limits
    root = Path(tempfile.mkdtemp(prefix="dgr-bench-", dir="/tmp"))
    sections = []
    try:
        print(machine())
        if parts & {"cold", "rebuild"}:
            results = bench_builds(root, runs, cold="cold" in parts)
            if "cold" in parts:
                sections.append(("Cold build vs buildah bud", report_cold(results, runs)))
            if "rebuild" in parts:
                sections.append(("No-change rebuild", report_rebuild(results, runs)))
        if "xdist" in parts:
            sections.append(("pytest -n 2 over 16 images", bench_xdist(root, runs)))
    finally:
        unmount_and_remove(root)
    for title, text in sections:
        print(f"\n## {title}\n\n{text}")
    print(f"\n{machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
