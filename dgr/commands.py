"""One function per CLI command: turn parsed arguments into library calls.

Each command prints its result on stdout once: as text, or with `--json` as one JSON
document (:func:`emit`; the shapes are in docs/cli.md, "Machine-readable output").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgr.build import BuildOptions, BuildResult
from dgr.errors import DgrError, UsageError, host_errors
from dgr.log import level_name, log, parse_level
from dgr.manifest_load import detect_project
from dgr.parser import NO_JSON, build_parser

if TYPE_CHECKING:
    from pytest import CollectReport, TestReport

    from dgr.ocistore import StoredOciImage
    from dgr.pod import PodBuild
    from dgr.store import StoredImage


def options(args: argparse.Namespace) -> BuildOptions:
    return BuildOptions.from_settings(
        home=getattr(args, "home_path", None),
        targets_root=getattr(args, "targets_root_path", None),
        set_env=args.set_env,
        log_level=parse_level(args.log_level),
        keep=bool(getattr(args, "keep_builder", False)),
        shell_on_failure=bool(getattr(args, "shell_on_failure", False)),
        shell_after=getattr(args, "shell_after", None) or "",
        timeout=getattr(args, "timeout", None),
        script_timeout=getattr(args, "script_timeout", None),
    )


def emit(args: argparse.Namespace, document: Mapping[str, Any], text: str | None = None) -> None:
    """The command's result on stdout: `document` as JSON with --json, else `text` if any."""
    if getattr(args, "json", False):
        print(json.dumps(document, indent=2, ensure_ascii=False))
    elif text is not None:
        print(text)


def images_document(results: list[BuildResult], **extra: list[Any]) -> dict[str, Any]:
    """`{"images": [record, ...]}`: one build record per image (dgr/metadata.py), each
    updated with the matching entry of every `extra` list under its key."""
    from dgr.metadata import result_record

    records = [result_record(result) for result in results]
    for key, values in extra.items():
        for record, value in zip(records, values, strict=True):
            record[key] = value
    return {"images": records}


def project(args: argparse.Namespace) -> Path:
    """The image project folder of `-W`, checked to hold a manifest (a pod is an error)."""
    path = Path(args.work_path).absolute()
    kind = detect_project(path)
    if kind == "pod":
        raise DgrError(
            f"dgr {getattr(args, 'command', None) or 'this command'} does not work on a pod",
            path=path,
            hint="on a pod: build, clean, try, test, install, push, sign, run, graph, kube",
        )
    return path


def pod_folder(args: argparse.Namespace) -> Path | None:
    """The pod folder of `-W`, or None when it is an image project."""
    path = Path(args.work_path).absolute()
    return path if detect_project(path) == "pod" else None


def init(args: argparse.Namespace) -> int:
    from dgr.init import init_project

    path = Path(args.work_path).absolute()
    init_project(path, force=args.force)
    log.info("Created a sample project in %s (try: dgr -W %s build)", path, args.work_path)
    emit(args, {"project": str(path)})
    return 0


def build(args: argparse.Namespace, *, force: bool = False) -> int:
    from dgr.plan import plan_build_image

    force = force or bool(getattr(args, "shell_after", None))  # a shell was asked for: build
    if (pod := pod_folder(args)) is not None:
        return pod_build(args, pod, force=force)
    result = plan_build_image(project(args), options(args), force=force)
    emit(args, images_document([result]), str(result.name))
    return 0


GLOBAL_ARGS = (
    "work_path",
    "log_level",
    "home_path",
    "targets_root_path",
    "set_env",
    "set_env_flags",
    "keep_builder",
    "json",
    "quiet",
    "color",
)


def clean(args: argparse.Namespace) -> int:
    """`dgr clean [COMMAND]`: remove the target, then run COMMAND with its default options."""
    from dgr.build import clean as clean_target

    if (pod := pod_folder(args)) is not None:
        from dgr.pod import clean_pod

        removed = clean_pod(pod, options(args))
    else:
        removed = [clean_target(project(args), options(args))]
    for path in removed:
        log.info("Removed %s", path)
    if args.then is None:
        emit(args, {"removed": [str(path) for path in removed]})
        return 0
    then = build_parser().parse_args([args.then])
    for name in GLOBAL_ARGS:
        if hasattr(args, name):
            setattr(then, name, getattr(args, name))
    return program(then)


def try_(args: argparse.Namespace) -> int:
    from dgr.trying import try_templates

    show = (lambda text: None) if args.json else print
    if (pod := pod_folder(args)) is not None:
        from dgr.pod import try_pod

        out = try_pod(pod, options(args), show=show)
    else:
        out = try_templates(project(args), options(args), show=show)
    log.info("Rendered templates into %s", out)
    files = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    emit(args, {"output": str(out), "files": files})
    return 0


def version(args: argparse.Namespace) -> int:
    """dgr's version, then those of its Python, its libraries and the tools it drives."""
    from dgr.about import versions

    found = versions()
    lines = [
        f"{'version' if name == 'dgr' else name:<10} : {value or 'not found'}"
        for name, value in found.items()
    ]
    emit(args, found, "dgr\n\n" + "\n".join(lines))
    return 0


def config(args: argparse.Namespace) -> int:
    cfg = options(args).config
    values: dict[str, Any] = {
        "home": str(cfg.home),
        "targetWorkDir": str(cfg.target_work_dir) if cfg.target_work_dir else None,
        "storePath": str(cfg.store_path),
        "cachePath": str(cfg.cache_path),
        "insecureOptions": list(cfg.insecure_options),
    }

    def text(value: Any) -> str:
        return ",".join(value) if isinstance(value, list) else str(value or "")

    if args.key:
        if args.key not in values:
            raise DgrError(f"unknown configuration key {args.key!r}", hint=f"one of {', '.join(values)}")
        values = {args.key: values[args.key]}
        emit(args, values, text(values[args.key]))
    else:
        emit(args, values, "\n".join(f"{key}: {text(value)}" for key, value in values.items()))
    return 0


def aci_version(args: argparse.Namespace) -> int:
    from dgr.aci import read_aci_manifest
    from dgr.build import json_manifest_name

    name = json_manifest_name(read_aci_manifest(args.file))
    emit(args, {"name": name.name, "version": name.version}, name.version)
    return 0


def run(args: argparse.Namespace) -> int:
    from dgr.container import run_image
    from dgr.plan import plan_build_image

    # --set-env values are the container's environment here; DGR_ENV_* still reach the build.
    flags = args.set_env_flags
    args.set_env = {k: v for k, v in args.set_env.items() if k not in flags}
    exec_ = [a for a in args.exec if a != "--"] or None
    env = {"LOG_LEVEL": level_name(parse_level(args.log_level)), **flags}
    if (pod := pod_folder(args)) is not None:
        return pod_run(args, pod, env, exec_)
    result = plan_build_image(project(args), options(args))
    return run_image(
        result,
        env=env,
        override=args.override,
        volumes=args.volume,
        host_network=args.net == "host",
        exec_=exec_,
        ports=args.publish,
    )


def graph(args: argparse.Namespace) -> int:
    from dgr.graph import write_graph
    from dgr.manifest_load import load_manifest
    from dgr.workspace import target_dir

    opts = options(args)
    if (pod := pod_folder(args)) is not None:
        from dgr.pod import app_manifests

        graphs = app_manifests(pod, opts)
    else:
        manifest = load_manifest(project(args))
        graphs = [(manifest, target_dir(manifest, opts.config, opts.targets_root))]
    written = [path for manifest, target in graphs for path in write_graph(manifest, target)]
    for path in written:
        log.info("Wrote %s", path)
    emit(args, {"files": [str(path) for path in written]})
    return 0


def store(args: argparse.Namespace) -> int:
    """`store list`: one line per image; `store rm REF`: remove by ID prefix or name[:version]
    (appc), by digest prefix or reference (OCI images, dgr/ociref.py)."""
    from dgr.ocistore import OciStore
    from dgr.reference import is_oci_reference
    from dgr.store import Store

    root = options(args).config.store_path
    images, oci_images = Store(root), OciStore(root)
    if args.store_action == "rm":
        if args.reference.startswith("sha256:") or is_oci_reference(args.reference):
            removed_oci = oci_images.remove(args.reference)
            for oci_image in removed_oci:
                log.info("Removed %s (%s)", oci_image.reference, oci_image.digest[:19])
            emit(args, {"removed": [_stored_oci(image) for image in removed_oci]})
            return 0
        removed = images.remove(args.reference)
        for image in removed:
            log.info("Removed %s (%s)", image.name, image.image_id[:23])
        emit(args, {"removed": [_stored(image) for image in removed]})
        return 0
    listed = [_stored(image) for image in images.list()]
    listed_oci = [_stored_oci(image) for image in oci_images.list()]
    rows = [("ID", "NAME", "OS/ARCH", "SIZE")]
    for entry in [*listed, *listed_oci]:
        size = entry["size"]
        rows.append(
            (
                entry.get("imageId", entry.get("digest", ""))[:23],
                entry["reference"],
                f"{entry['os'] or '-'}/{entry['arch'] or '-'}",
                f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size / 1024:.1f} KiB",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3]
        for row in rows
    ]
    emit(args, {"images": listed, "ociImages": listed_oci}, "\n".join(lines))
    return 0


def _stored_oci(image: StoredOciImage) -> dict[str, Any]:
    """An OCI image of the store as JSON (size: its compressed layers)."""
    from dgr.ociconfig import oci_platform

    platform = oci_platform()
    return {
        "digest": image.digest,
        "reference": image.reference,
        "os": platform["os"],
        "arch": platform["architecture"],
        "size": sum(layer.size for layer in image.layers),
        "layers": [layer.digest for layer in image.layers],
    }


def _stored(image: StoredImage) -> dict[str, Any]:
    """A store entry as JSON."""
    return {
        "imageId": image.image_id,
        "name": image.name.name,
        "version": image.name.version,
        "reference": str(image.name),
        "os": image.os,
        "arch": image.arch,
        "size": image.aci.stat().st_size if image.aci.exists() else 0,
        "aci": str(image.aci),
    }


def test(args: argparse.Namespace) -> int:
    """`dgr test`: pytest on the project folder (the plugin builds, starts, runs the tests)."""
    code, counts = run_tests(args)
    emit(args, {"exitCode": code, **counts.document()})
    return code


def run_tests(args: argparse.Namespace) -> tuple[int, _TestCounts]:
    """pytest's exit code and counts on the project of `-W` (with --json, its report goes to
    stderr: stdout is for the command's document)."""
    import pytest

    from dgr.tester import pytest_arguments

    sys.dont_write_bytecode = True  # no __pycache__ in the project's tests/ (a build input)
    extra = [a for a in getattr(args, "pytest_args", None) or [] if a != "--"]
    if getattr(args, "quiet", False):
        extra.insert(0, "-q")
    if getattr(args, "color", "auto") != "auto":
        extra.insert(0, f"--color={'yes' if args.color == 'always' else 'no'}")
    argv = pytest_arguments(
        pod_folder(args) or project(args), options(args), home=getattr(args, "home_path", None), extra=extra
    )
    counts = _TestCounts()
    with _stdout_to_stderr(getattr(args, "json", False)), _terminate_as_interrupt():
        code = int(pytest.main(argv, plugins=[counts]))
    return code, counts


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While pytest runs, SIGTERM stops it as Ctrl-C does (its containers stopped, the session
    reported as interrupted), not as a failure of the test that was running; then it reaches
    dgr's own handler (exit code 143)."""
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:  # once: a second SIGTERM must not cut pytest's teardown short
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received:
        signal.raise_signal(signal.SIGTERM)


class _TestCounts:
    """A pytest plugin counting outcomes as pytest's summary line does, for `dgr test --json`."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("passed", "failed", "skipped", "errors", "xfailed", "xpassed"), 0)
        self.failures: list[str] = []

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        if report.skipped:
            self.counts["xfailed" if hasattr(report, "wasxfail") else "skipped"] += 1
        elif report.when == "call":
            if hasattr(report, "wasxfail") and report.passed:
                self.counts["xpassed"] += 1
            else:
                self.counts["passed" if report.passed else "failed"] += 1
        elif report.failed:  # setup or teardown
            self.counts["errors"] += 1
        if report.failed:
            self.failures.append(report.nodeid)

    def pytest_collectreport(self, report: CollectReport) -> None:
        if report.failed:
            self.counts["errors"] += 1
            self.failures.append(report.nodeid)

    def document(self) -> dict[str, Any]:
        return {**self.counts, "failures": self.failures}


@contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """While active, whatever writes to stdout (pytest's report, tools it runs) goes to stderr,
    so that stdout holds only the JSON document."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def install(args: argparse.Namespace) -> int:
    """`dgr install [-t] [--to store|podman|docker]`: build if needed, (test,) then add the
    image to the local store, or load it into podman's or docker's images."""
    from dgr.sign import current_signature
    from dgr.store import Store

    if getattr(args, "test", False) and run_tests(args)[0] != 0:
        raise DgrError("tests failed: image not installed", path=pod_folder(args) or project(args))
    opts = options(args)
    results = built_images(args, opts)
    destination = getattr(args, "to", "store")
    installed: list[dict[str, Any]] = []
    for result in results:
        if destination != "store":
            from dgr.export import load_into

            installed.append({"to": destination, "reference": load_into(destination, result)})
            continue
        ws = result.workspace
        stored = Store(opts.config.store_path).add(
            ws.aci, layer=ws.layer, image_id=result.image_id, signature=current_signature(ws.aci)
        )
        log.info("Installed %s (%s) in %s", stored.name, stored.image_id[:23], opts.config.store_path)
        installed.append({"to": "store", "store": str(opts.config.store_path), "aci": str(stored.aci)})
    emit(args, images_document(results, installed=installed))
    return 0


def export(args: argparse.Namespace) -> int:
    """`dgr export [-o FILE] [--format F]`: the image as an archive for podman/docker load."""
    from dgr.export import check_destination, export_archive

    if args.output:  # checked before any build
        if pod_folder(args) is not None:
            raise UsageError("on a pod, dgr export writes one archive per app in its target: no -o")
        check_destination(Path(args.output))
    results = built_images(args, options(args))
    archives = []
    for result in results:
        exported = export_archive(result, Path(args.output) if args.output else None, args.format)
        log.info("Wrote %s (%s, %s)", exported.path, exported.format, exported.reference)
        archives.append(
            {"path": str(exported.path), "format": exported.format, "reference": exported.reference}
        )
    emit(args, images_document(results, archive=archives), "\n".join(a["path"] for a in archives))
    return 0


def built_images(args: argparse.Namespace, opts: BuildOptions) -> list[BuildResult]:
    """The image of `-W`, or every app image of the pod of `-W`, built if needed."""
    from dgr.plan import plan_build_image

    pod = pod_folder(args)
    if pod is None:
        return [plan_build_image(project(args), opts)]
    from dgr.plan import plan_build_pod

    return [app.result for app in plan_build_pod(pod, opts).apps]


def sign(args: argparse.Namespace) -> int:
    from dgr.sign import sign_image

    opts = options(args)
    results = built_images(args, opts)
    signatures = [sign_image(result.workspace.aci, result.name, opts.config) for result in results]
    emit(args, images_document(results, signature=[str(s) if s else None for s in signatures]))
    return 0


def cp(args: argparse.Namespace) -> int:
    from dgr.extract import copy_from_aci
    from dgr.plan import plan_build_image

    result = plan_build_image(project(args), options(args))
    dest = copy_from_aci(result.workspace.aci, args.path, Path(args.host_dir))
    log.info("Copied %s to %s", args.path, dest)
    emit(args, {"copied": str(dest)})
    return 0


def push(args: argparse.Namespace) -> int:
    """`dgr push [-t]`: build if needed, (test,) sign when configured, push to every target."""
    from dgr.push import prepare_signature, push_image, push_targets

    opts = options(args)
    push_targets(opts.config)  # a bad push section fails before any build or test
    if getattr(args, "test", False) and run_tests(args)[0] != 0:
        raise DgrError("tests failed: nothing pushed", path=Path(args.work_path).absolute())
    results = built_images(args, opts)
    pushed_per_image = []
    for result in results:
        signature = prepare_signature(result, opts.config)
        pushed = push_image(result, opts.config, signature=signature)
        if not args.json:
            for one in pushed:
                print(f"{one.location} {one.digest}".rstrip(), flush=True)
        pushed_per_image.append([one.document() for one in pushed])
    emit(args, images_document(results, pushed=pushed_per_image))
    return 0


# --- pods (dgr/pod.py): each command acts on every app and on the pod manifest ---------------


def pod_build(args: argparse.Namespace, folder: Path, *, force: bool = False) -> int:
    from dgr.plan import plan_build_pod

    built = plan_build_pod(folder, options(args), force=force)
    emit(args, pod_document(built), "\n".join(str(app.result.name) for app in built.apps))
    return 0


def pod_document(built: PodBuild) -> dict[str, Any]:
    """`{"pod": {...}, "images": [...]}` for a built pod; each image record carries its app's name."""
    pod = built.pod
    document = images_document([app.result for app in built.apps], app=[app.name for app in built.apps])
    return {
        "pod": {
            "name": pod.name.name,
            "version": built.version,
            "reference": str(pod.name.with_version(built.version)),
            "target": str(built.target),
            "manifest": str(built.manifest_json),
            "kube": str(built.kube_yaml),
        },
        **document,
    }


def pod_run(args: argparse.Namespace, folder: Path, env: dict[str, str], exec_: list[str] | None) -> int:
    from dgr.plan import plan_build_pod
    from dgr.pod import run_pod

    if exec_ or args.volume:
        raise UsageError(
            "on a pod, dgr run takes no command and no -v (set exec and volumes in pod-manifest.yml)"
        )
    opts = options(args)
    return run_pod(
        plan_build_pod(folder, opts), opts, env=env, override=args.override, host_network=args.net == "host"
    )


def kube(args: argparse.Namespace) -> int:
    """`dgr kube`: build the pod if needed, write its Kubernetes Pod manifest, print its path."""
    from dgr.kube import write_kube
    from dgr.plan import plan_build_pod

    folder = pod_folder(args)
    if folder is None:
        raise DgrError(
            "dgr kube works on a pod (a folder holding pod-manifest.yml)",
            path=Path(args.work_path).absolute(),
        )
    built = plan_build_pod(folder, options(args))
    path = write_kube(built, registry=args.registry, dest=Path(args.output) if args.output else None)
    emit(args, {**pod_document(built), "kube": str(path)}, str(path))
    return 0


def completion(args: argparse.Namespace) -> int:
    """`dgr completion bash|zsh`: the completion script, made from the parser itself."""
    from dgr.completion import completion_script

    print(completion_script(build_parser(), args.shell), end="")
    return 0


def program(args: argparse.Namespace) -> int:
    """Run the command of `args`; raises DgrError on failure."""
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "init": init,
        "build": build,
        "clean": clean,
        "try": try_,
        "test": test,
        "install": install,
        "export": export,
        "push": push,
        "run": run,
        "version": version,
        "graph": graph,
        "kube": kube,
        "sign": sign,
        "config": config,
        "aci-version": aci_version,
        "cp": cp,
        "store": store,
        "completion": completion,
    }
    if args.json and args.command in NO_JSON:
        raise UsageError(f"dgr {args.command} has no --json: {NO_JSON[args.command]}")
    if args.json and (getattr(args, "shell_on_failure", False) or getattr(args, "shell_after", None)):
        raise UsageError("--json does not go with a debugging shell (its output is on stdout)")
    with host_errors(f"dgr {args.command}"):  # disk full, read-only... as one message
        return handlers[args.command](args)
