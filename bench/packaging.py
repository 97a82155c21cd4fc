"""Packaging speed (SPEC §11: a 1 GB rootfs within 10% of `tar | gzip -1` on the same data).

Generates a mixed rootfs (copies of the host's /usr: binaries, libraries, scripts, docs,
many small files and symlinks; plus 10% incompressible random files), then times, side by
side in one run, interleaved, best of --rounds:

  tar | gzip -1     `tar -C DIR -cf - . | gzip -1 > out` (the reference)
  tarfile w:gz      Python's tarfile writing a gzip level-1 stream (the obvious alternative)
  oci layer         dgr.layer: the OCI layer blob (tar + gzip + sha256 of both)
  ... one thread    the same with a single compression thread (same bytes)
  aci               dgr.aci.write_aci: the uncompressed ACI (tar + sha512)
  aci + oci         what a build does: both of the above, one after the other

    .venv/bin/python bench/packaging.py [--size 1G] [--quick] [--rounds 2] [--dir DIR] [--keep]

Prints a Markdown block (for docs/benchmarks.md) with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dgr.aci import write_aci
from dgr.layer import Whiteouts, write_layer
from dgr.process import run

RANDOM_SHARE = 0.10
SOURCE = Path("/usr")
MANIFEST = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/bench"}


def parse_size(text: str) -> int:
    """`1G`, `200M`, `512K` or a byte count."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def copy_host_files(dest: Path, budget: int) -> int:
    """Copy regular files and symlinks of /usr (sorted walk, repeated if needed) up to `budget` bytes."""
    copied = 0
    round_ = 0
    while copied < budget:
        for directory, dirs, files in os.walk(SOURCE):
            dirs.sort()
            rel = Path(directory).relative_to(SOURCE)
            for name in sorted(files):
                source = Path(directory, name)
                target = dest / f"usr{round_}" / rel / name
                try:
                    st = source.lstat()
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if source.is_symlink():
                        target.symlink_to(os.readlink(source))
                        continue
                    if not source.is_file() or st.st_size > budget - copied:
                        continue
                    shutil.copy2(source, target)
                except OSError:
                    continue
                copied += st.st_size
                if copied >= budget:
                    return copied
        round_ += 1
    return copied


def write_random_files(dest: Path, budget: int) -> int:
    """Incompressible files (as already-compressed data in real images), 64 KiB to 8 MiB."""
    rng = random.Random(42)
    written = 0
    index = 0
    while written < budget:
        size = min(rng.randint(64 << 10, 8 << 20), budget - written)
        path = dest / "random" / f"{index:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        written += size
        index += 1
    return written


def generate(dest: Path, size: int) -> tuple[int, int]:
    """Fill `dest` with about `size` bytes of mixed files; returns (bytes, files)."""
    random_bytes = write_random_files(dest, int(size * RANDOM_SHARE))
    host_bytes = copy_host_files(dest, size - random_bytes)
    files = sum(len(names) for _, _, names in os.walk(dest))
    return random_bytes + host_bytes, files


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def reference(rootfs: Path, out: Path) -> None:
    run(["sh", "-c", 'tar -C "$1" -cf - . | gzip -1 > "$2"', "sh", str(rootfs), str(out)], keep_output=False)


def python_tarfile(rootfs: Path, out: Path) -> None:
    with tarfile.open(out, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as archive:
        archive.add(rootfs, arcname=".")


def oci_layer(rootfs: Path, out: Path, threads: int | None = None) -> None:
    with out.open("wb") as handle:
        write_layer(rootfs, handle, whiteouts=Whiteouts.OCI, gzip=True, hashes=("sha256",), threads=threads)


def aci(rootfs: Path, out: Path) -> None:
    write_aci(rootfs, MANIFEST, out)


def both(rootfs: Path, work: Path) -> None:
    aci(rootfs, work / "image.aci")
    oci_layer(rootfs, work / "layer.tgz")


def machine() -> str:
    model = "unknown"
    lscpu = run(["lscpu"], check=False).output
    for line in lscpu.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return (
        f"date: {datetime.date.today()}; machine: {model} (`lscpu` model name), {os.cpu_count()} CPUs "
        f"(`nproc`), Linux {platform.release().split('-')[0]}, Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1G", help="rootfs size (default 1G)")
    parser.add_argument("--quick", action="store_true", help="64 MiB, one round, no tarfile")
    parser.add_argument("--rounds", type=int, default=2, help="best of N interleaved rounds (default 2)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated rootfs and outputs")
    parser.add_argument("--no-tarfile", action="store_true", help="skip the slow Python tarfile variant")
    args = parser.parse_args()
    size = parse_size("64M" if args.quick else args.size)
    rounds = 1 if args.quick else args.rounds
    work = args.dir or Path(tempfile.mkdtemp(prefix="dgr-bench-packaging-", dir="/var/tmp"))
    try:
        measure(work, size, rounds, with_tarfile=not (args.quick or args.no_tarfile))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, size: int, rounds: int, *, with_tarfile: bool) -> None:
    rootfs = work / "rootfs"
    if not rootfs.is_dir():
        rootfs.mkdir(parents=True)
        total, files = generate(rootfs, size)
    else:
        files = sum(len(names) for _, _, names in os.walk(rootfs))
        total = sum(p.lstat().st_size for p in rootfs.rglob("*") if p.is_file() and not p.is_symlink())
    reference(rootfs, work / "warm.tgz")  # fill the page cache before the first timing
    variants: dict[str, Callable[[], object]] = {
        "`tar \\| gzip -1` (reference)": lambda: reference(rootfs, work / "ref.tgz"),
        "oci layer (tar + gzip + sha256 x2)": lambda: oci_layer(rootfs, work / "layer.tgz"),
        "aci (tar + sha512)": lambda: aci(rootfs, work / "image.aci"),
        "oci layer, one compression thread": lambda: oci_layer(rootfs, work / "layer1.tgz", threads=1),
        "aci + oci (a build)": lambda: both(rootfs, work),
    }
    if with_tarfile:
        variants["Python tarfile w:gz level 1"] = lambda: python_tarfile(rootfs, work / "tarfile.tgz")
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, action in variants.items():
            best[name] = min(best.get(name, float("inf")), timed(action))
    base = best["`tar \\| gzip -1` (reference)"]
    ref_size = (work / "ref.tgz").stat().st_size
    ours_size = (work / "layer.tgz").stat().st_size
    print(f"- {machine()}")
    print(f"- rootfs: {total / (1 << 20):.0f} MiB in {files} files; best of {rounds} interleaved round(s)")
    print(f"- compressed: reference {ref_size / (1 << 20):.0f} MiB, dgr {ours_size / (1 << 20):.0f} MiB\n")
    print("| variant | time | ratio to reference |\n| --- | ---: | ---: |")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} s | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
