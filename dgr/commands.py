"""One function per CLI command: turn parsed arguments into library calls."""

from __future__ import annotations

import argparse
from pathlib import Path

import dgr
from dgr.build import BuildOptions, BuildResult
from dgr.config import load_config
from dgr.errors import DgrError
from dgr.log import level_name, log, parse_level
from dgr.manifest import detect_project


def options(args: argparse.Namespace) -> BuildOptions:
    home = getattr(args, "home_path", None)
    root = getattr(args, "targets_root_path", None)
    level = parse_level(args.log_level)
    return BuildOptions(
        config=load_config(Path(home) if home else None),
        set_env=args.set_env,
        log_level=level,
        keep=bool(getattr(args, "keep_builder", False)),
        echo=level <= 10,
        targets_root=Path(root).absolute() if root else None,
    )


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
    return 0


def build(args: argparse.Namespace, *, force: bool = False) -> int:
    from dgr.build import build as build_image

    if (pod := pod_folder(args)) is not None:
        return pod_build(args, pod, force=force)
    result = build_image(project(args), options(args), force=force)
    print(result.name)
    return 0


GLOBAL_ARGS = (
    "work_path",
    "log_level",
    "home_path",
    "targets_root_path",
    "set_env",
    "set_env_flags",
    "keep_builder",
)


def clean(args: argparse.Namespace) -> int:
    """`dgr clean [COMMAND]`: remove the target, then run COMMAND with its default options."""
    from dgr.build import clean as clean_target
    from dgr.cli import build_parser, program

    if (pod := pod_folder(args)) is not None:
        from dgr.pod import clean_pod

        for removed in clean_pod(pod, options(args)):
            log.info("Removed %s", removed)
    else:
        target = clean_target(project(args), options(args))
        log.info("Removed %s", target)
    if args.then is None:
        return 0
    then = build_parser().parse_args([args.then])
    for name in GLOBAL_ARGS:
        if hasattr(args, name):
            setattr(then, name, getattr(args, name))
    return program(then)


def try_(args: argparse.Namespace) -> int:
    from dgr.trying import try_templates

    if (pod := pod_folder(args)) is not None:
        from dgr.pod import try_pod

        out = try_pod(pod, options(args))
    else:
        out = try_templates(project(args), options(args))
    log.info("Rendered templates into %s", out)
    return 0


def version(args: argparse.Namespace) -> int:
    print(f"dgr\n\nversion    : {dgr.__version__}")
    return 0


def config(args: argparse.Namespace) -> int:
    cfg = options(args).config
    values = {
        "home": str(cfg.home),
        "targetWorkDir": str(cfg.target_work_dir or ""),
        "storePath": str(cfg.store_path),
        "cachePath": str(cfg.cache_path),
        "insecureOptions": ",".join(cfg.insecure_options),
    }
    if args.key:
        if args.key not in values:
            raise DgrError(f"unknown configuration key {args.key!r}", hint=f"one of {', '.join(values)}")
        print(values[args.key])
    else:
        for key, value in values.items():
            print(f"{key}: {value}")
    return 0


def aci_version(args: argparse.Namespace) -> int:
    from dgr.aci import read_aci_manifest
    from dgr.build import json_manifest_name

    print(json_manifest_name(read_aci_manifest(args.file)).version)
    return 0


def run(args: argparse.Namespace) -> int:
    from dgr.build import build as build_image
    from dgr.container import run_image

    # --set-env values are the container's environment here; DGR_ENV_* still reach the build.
    flags = args.set_env_flags
    args.set_env = {k: v for k, v in args.set_env.items() if k not in flags}
    exec_ = [a for a in args.exec if a != "--"] or None
    env = {"LOG_LEVEL": level_name(parse_level(args.log_level)), **flags}
    if (pod := pod_folder(args)) is not None:
        return pod_run(args, pod, env, exec_)
    result = build_image(project(args), options(args))
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
    from dgr.manifest import load_manifest
    from dgr.workspace import target_dir

    opts = options(args)
    if (pod := pod_folder(args)) is not None:
        from dgr.pod import app_manifests

        graphs = app_manifests(pod, opts)
    else:
        manifest = load_manifest(project(args))
        graphs = [(manifest, target_dir(manifest, opts.config, opts.targets_root))]
    for manifest, target in graphs:
        for path in write_graph(manifest, target):
            log.info("Wrote %s", path)
    return 0


def store(args: argparse.Namespace) -> int:
    """`store list`: one line per image; `store rm REF`: remove by ID prefix or name[:version]."""
    from dgr.store import Store

    images = Store(options(args).config.store_path)
    if args.store_action == "rm":
        for image in images.remove(args.reference):
            log.info("Removed %s (%s)", image.name, image.image_id[:23])
        return 0
    rows = [("ID", "NAME", "OS/ARCH", "SIZE")]
    for image in images.list():
        size = image.aci.stat().st_size if image.aci.exists() else 0
        rows.append(
            (
                image.image_id[:23],
                str(image.name),
                f"{image.os or '-'}/{image.arch or '-'}",
                f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size / 1024:.1f} KiB",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3])
    return 0


def test(args: argparse.Namespace) -> int:
    """`dgr test`: pytest on the project folder (the plugin builds, starts, runs the tests)."""
    import sys

    import pytest

    from dgr.tester import pytest_arguments

    sys.dont_write_bytecode = True  # no __pycache__ in the project's tests/ (a build input)
    return int(
        pytest.main(
            pytest_arguments(
                pod_folder(args) or project(args),
                options(args),
                home=getattr(args, "home_path", None),
                extra=[a for a in getattr(args, "pytest_args", None) or [] if a != "--"],
            )
        )
    )


def install(args: argparse.Namespace) -> int:
    """`dgr install [-t]`: build if needed, (test,) then add the image to the local store."""
    from dgr.build import build as build_image
    from dgr.store import Store

    if getattr(args, "test", False) and test(args) != 0:
        raise DgrError("tests failed: image not installed", path=pod_folder(args) or project(args))
    opts = options(args)
    if (pod := pod_folder(args)) is not None:
        from dgr.pod import build_pod

        results = [app.result for app in build_pod(pod, opts).apps]
    else:
        results = [build_image(project(args), opts)]
    from dgr.sign import current_signature

    for result in results:
        ws = result.workspace
        stored = Store(opts.config.store_path).add(
            ws.aci, layer=ws.layer, image_id=result.image_id, signature=current_signature(ws.aci)
        )
        log.info("Installed %s (%s) in %s", stored.name, stored.image_id[:23], opts.config.store_path)
    return 0


def built_images(args: argparse.Namespace, opts: BuildOptions) -> list[BuildResult]:
    """The image of `-W`, or every app image of the pod of `-W`, built if needed."""
    from dgr.build import build as build_image

    pod = pod_folder(args)
    if pod is None:
        return [build_image(project(args), opts)]
    from dgr.pod import build_pod

    return [app.result for app in build_pod(pod, opts).apps]


def sign(args: argparse.Namespace) -> int:
    from dgr.sign import sign_image

    opts = options(args)
    for result in built_images(args, opts):
        sign_image(result.workspace.aci, result.name, opts.config)
    return 0


def cp(args: argparse.Namespace) -> int:
    from dgr.build import build as build_image
    from dgr.extract import copy_from_aci

    result = build_image(project(args), options(args))
    dest = copy_from_aci(result.workspace.aci, args.path, Path(args.host_dir))
    log.info("Copied %s to %s", args.path, dest)
    return 0


def push(args: argparse.Namespace) -> int:
    """`dgr push [-t]`: build if needed, (test,) sign when configured, push to every target."""
    from dgr.push import prepare_signature, push_image, push_targets

    opts = options(args)
    push_targets(opts.config)  # a bad push section fails before any build or test
    if getattr(args, "test", False) and test(args) != 0:
        raise DgrError("tests failed: nothing pushed", path=Path(args.work_path).absolute())
    for result in built_images(args, opts):
        signature = prepare_signature(result, opts.config)
        for pushed in push_image(result, opts.config, signature=signature):
            print(f"{pushed.location} {pushed.digest}".rstrip())
    return 0


# --- pods (dgr/pod.py): each command acts on every app and on the pod manifest ---------------


def pod_build(args: argparse.Namespace, folder: Path, *, force: bool = False) -> int:
    from dgr.pod import build_pod

    for app in build_pod(folder, options(args), force=force).apps:
        print(app.result.name)
    return 0


def pod_run(args: argparse.Namespace, folder: Path, env: dict[str, str], exec_: list[str] | None) -> int:
    from dgr.errors import UsageError
    from dgr.pod import build_pod, run_pod

    if exec_ or args.volume:
        raise UsageError(
            "on a pod, dgr run takes no command and no -v (set exec and volumes in pod-manifest.yml)"
        )
    opts = options(args)
    return run_pod(
        build_pod(folder, opts), opts, env=env, override=args.override, host_network=args.net == "host"
    )


def kube(args: argparse.Namespace) -> int:
    """`dgr kube`: build the pod if needed, write its Kubernetes Pod manifest, print its path."""
    from dgr.kube import write_kube
    from dgr.pod import build_pod

    folder = pod_folder(args)
    if folder is None:
        raise DgrError(
            "dgr kube works on a pod (a folder holding pod-manifest.yml)",
            path=Path(args.work_path).absolute(),
        )
    built = build_pod(folder, options(args))
    print(write_kube(built, registry=args.registry, dest=Path(args.output) if args.output else None))
    return 0
