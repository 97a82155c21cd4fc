"""Container start: `dgr run` against `podman run` of the same image (issue 8's bar).

The `dgr init` project is built once; its OCI layout is loaded into a private podman (the
containers.conf of reference/host-notes.md, state under one temporary folder). Each round
runs, interleaved, `dgr run` (the whole CLI: Python start, the sandbox in its user namespace,
prestart, the app) and `podman run --rm --network=none` of the same image (runc; podman's
entrypoint is the same start wrapper, so the same prestart and app run). Medians over --runs
rounds and their ratio are printed with the machine and the date.

    .venv/bin/python bench/run.py [--runs N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.podman import Podman  # noqa: E402


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    return elapsed


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    cpus = f"{os.cpu_count()} CPUs, Linux {platform.release()}"
    return f"date: {datetime.date.today()}; machine: {model}, {cpus}; load {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (default 15)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dgr-bench-run-"))
    try:
        home = root / "home"
        home.mkdir()
        (home / "config.yml").write_text(f"cachePath: {root / 'cache'}\nstorePath: {root / 'store'}\n")
        dgr = [sys.executable, "-m", "dgr.cli", "-q", "-H", str(home), "-W", str(root / "aci-hello")]
        subprocess.run([*dgr, "init"], check=True, capture_output=True)
        subprocess.run([*dgr, "build"], check=True, capture_output=True)
        version = (root / "aci-hello" / "target" / "version").read_text().strip().rsplit(":", 1)[1]
        with Podman(root / "podman") as podman:
            image = podman.load_oci(root / "aci-hello" / "target" / "oci", version)
            base = ["podman", "--root", str(podman.storage), "--runroot", str(podman.runroot)]
            base += ["--tmpdir", str(podman.tmpdir), "run", "--rm", "--network=none", image]
            dgr_times, podman_times = [], []
            timed([*dgr, "run"])  # warm both once
            timed(base, podman.env)
            for _ in range(args.runs):
                dgr_times.append(timed([*dgr, "run"]))
                podman_times.append(timed(base, podman.env))
        d, p = statistics.median(dgr_times), statistics.median(podman_times)
        print(machine())
        print(f"runs: {args.runs} rounds, interleaved; medians (min-max)")
        for label, times in (("dgr run", dgr_times), ("podman run", podman_times)):
            spread = f"{min(times) * 1000:.1f}-{max(times) * 1000:.1f}"
            print(f"{label:12} {statistics.median(times) * 1000:7.1f} ms  ({spread})")
        print(f"ratio dgr run / podman run: {d / p:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
