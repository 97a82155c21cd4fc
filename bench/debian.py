"""Build times of the Debian family (examples/debian): cold and no-change builds of the base,
the nginx service and the pod, and the same service built by `buildah bud` from the same base.

The family is copied (without its targets) into a temporary folder; the first builder is made
there once by its `make-builder` (timed). Then, in rounds, each with a fresh dgr store and
fresh targets (`-p`):

  base     `dgr build` of aci-debian: the builder archive fetched into the empty store, then
           mmdebstrap into $ROOTFS in the builder, then packaging; then again, nothing changed;
  service  `dgr build` of aci-nginx on the built base (apt-get install nginx in the image's
           root, packaging); then again, nothing changed;
  pod      `dgr build` of pod-nginx (two app images on the built images, the pod manifest,
           the Kubernetes export); then again, nothing changed;
  buildah  `buildah bud` of a Containerfile doing what aci-nginx's build does, FROM the base's
           OCI layout (`oci:DIR:TAG`): with a fresh storage (the base imported first), and
           with a storage that already holds the base.

Both tools download nginx from the same Debian mirror (the host's) in every round, so the
network is part of both figures. Medians over --runs rounds.

    .venv/bin/python bench/debian.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from builds import DGR, Buildah, machine, ms, run_checked, timed, unmount_and_remove  # noqa: E402

FAMILY = Path(__file__).resolve().parent.parent / "examples" / "debian"
PARTS = ("base", "service", "pod")
BUILDAH_DRIVER = "overlay"


def copy_family(dest: Path) -> Path:
    shutil.copytree(FAMILY, dest, ignore=shutil.ignore_patterns("target", "__pycache__"))
    return dest


def containerfile(family: Path, base_layout: Path, base_tag: str, context: Path) -> Path:
    """A Containerfile doing what aci-nginx's build does: its build script, its attributes
    and templates copied where dgr puts them, FROM the base's OCI layout."""
    shutil.copytree(family / "aci-nginx", context, ignore=shutil.ignore_patterns("target", "tests"))
    lines = [
        f"FROM oci:{base_layout}:{base_tag}",
        "COPY runlevels/build/10.nginx.sh /tmp/10.nginx.sh",
        "RUN mkdir -p /dgr/builder/attributes && sh /tmp/10.nginx.sh"
        " && rm -rf /dgr/builder /tmp/10.nginx.sh",
        "COPY attributes/ /dgr/attributes/nginx/",
        "COPY templates/ /dgr/templates/",
    ]
    (context / "Containerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return context


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dgr-bench-debian-"))
    samples: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        samples.setdefault(key, []).append(seconds)
        print(f"  {key}: {ms(seconds)}", flush=True)

    try:
        family = copy_family(root / "family")
        start = time.perf_counter()
        run_checked([str(family / "make-builder")])
        builder_seconds = time.perf_counter() - start
        print(f"make-builder: {builder_seconds:.1f} s", flush=True)
        for round_ in range(args.runs):
            print(f"round {round_ + 1}/{args.runs}", flush=True)
            home = root / f"home-{round_}"
            home.mkdir()
            (home / "config.yml").write_text(
                f"cachePath: {root / 'cache'}\nstorePath: {root / f'store-{round_}'}\n", encoding="utf-8"
            )
            targets = root / f"targets-{round_}"
            for part, folder in zip(PARTS, ("aci-debian", "aci-nginx", "pod-nginx"), strict=True):
                argv = [*DGR, "-H", str(home), "-W", str(family / folder), "-p", str(targets), "build"]
                add(f"{part} cold", timed(argv))
                add(f"{part} no-change", timed(argv))
            base = targets / "debian"
            tag = (base / "version").read_text().split(":", 1)[1].strip()
            fresh = Buildah(root / f"buildah-fresh-{round_}", BUILDAH_DRIVER)
            warm = Buildah(root / "buildah-warm", BUILDAH_DRIVER)
            try:
                context = containerfile(family, base / "oci", tag, root / f"context-{round_}")
                add("buildah fresh storage", fresh.bud(context))
                if round_ == 0:
                    warm.bud(context)  # the base imported into this storage once, untimed
                add("buildah base in storage", warm.bud(context))
            finally:
                fresh.cleanup()
            shutil.rmtree(targets, ignore_errors=True)
        Buildah(root / "buildah-warm", BUILDAH_DRIVER).cleanup()
    finally:
        unmount_and_remove(root)
    med = {key: statistics.median(values) for key, values in samples.items()}
    print()
    print(f"- {machine()}; medians of {args.runs} rounds; make-builder once: {builder_seconds:.1f} s")
    print()
    print("| image | cold | no-change (CLI) | no-change / cold |")
    print("| --- | ---: | ---: | ---: |")
    for part in PARTS:
        cold, again = med[f"{part} cold"], med[f"{part} no-change"]
        print(f"| {part} | {cold:.1f} s | {ms(again)} | {again / cold:.1%} |")
    print()
    print(
        "| nginx on the base | dgr cold | buildah, base in storage | buildah, fresh storage "
        "| dgr / buildah (base in storage) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    dgr_cold, warm_b, fresh_b = (
        med["service cold"],
        med["buildah base in storage"],
        med["buildah fresh storage"],
    )
    print(
        f"| aci-nginx | {dgr_cold:.1f} s | {warm_b:.1f} s | {fresh_b:.1f} s | **{dgr_cold / warm_b:.2f}** |"
    )


if __name__ == "__main__":
    main()
