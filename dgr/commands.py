"""One function per CLI command: turn parsed arguments into library calls.

Each command prints its result on stdout once: as text, or with `--json` as one JSON
document (:func:`emit`; the shapes are in docs/cli.md, "Machine-readable output", made by
dgr/documents.py). A command on the project of `-W` goes through the project protocol
(dgr/project.py), the same for an image and a pod. Each command imports the library it
uses, here: dgr.project alone costs ~100 ms to import, which `--version`, `config` or
`completion` need not pay.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgr.errors import DgrError, UsageError, host_errors
from dgr.log import level_name, log, parse_level
from dgr.options import BuildOptions
from dgr.parser import NO_JSON, build_parser

if TYPE_CHECKING:
    from dgr.project import Project
    from dgr.testrun import TestCounts


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


def project(args: argparse.Namespace) -> Project:
    """The project of `-W` (an image or a pod), with the command's options."""
    from dgr.project import open_project

    return open_project(Path(args.work_path).absolute(), options(args))


def init(args: argparse.Namespace) -> int:
    from dgr.init import init_project

    path = Path(args.work_path).absolute()
    init_project(path, force=args.force)
    log.info("Created a sample project in %s (try: dgr -W %s build)", path, args.work_path)
    emit(args, {"project": str(path)})
    return 0


def build(args: argparse.Namespace, *, force: bool = False) -> int:
    force = force or bool(getattr(args, "shell_after", None))  # a shell was asked for: build
    built = project(args).build(force=force)
    emit(args, built.document(), "\n".join(str(result.name) for result in built.results))
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
    removed = project(args).clean()
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
    show = (lambda text: None) if args.json else print
    out = project(args).try_templates(show)
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
    from dgr.package import json_manifest_name

    name = json_manifest_name(read_aci_manifest(args.file))
    emit(args, {"name": name.name, "version": name.version}, name.version)
    return 0


def run(args: argparse.Namespace) -> int:
    # --set-env values are the container's environment here; DGR_ENV_* still reach the build.
    flags = args.set_env_flags
    args.set_env = {k: v for k, v in args.set_env.items() if k not in flags}
    exec_ = [a for a in args.exec if a != "--"] or None
    env = {"LOG_LEVEL": level_name(parse_level(args.log_level)), **flags}
    return project(args).run(
        env=env,
        override=args.override,
        volumes=args.volume,
        host_network=args.net == "host",
        exec_=exec_,
        ports=args.publish,
    )


def graph(args: argparse.Namespace) -> int:
    written = project(args).write_graphs()
    for path in written:
        log.info("Wrote %s", path)
    emit(args, {"files": [str(path) for path in written]})
    return 0


def store(args: argparse.Namespace) -> int:
    """`store list`: one line per image; `store rm REF`: remove by ID prefix or name[:version]
    (appc), by digest prefix or reference (OCI images, dgr/ociref.py)."""
    from dgr.documents import stored_document, stored_oci_document
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
            emit(args, {"removed": [stored_oci_document(image) for image in removed_oci]})
            return 0
        removed = images.remove(args.reference)
        for image in removed:
            log.info("Removed %s (%s)", image.name, image.image_id[:23])
        emit(args, {"removed": [stored_document(image) for image in removed]})
        return 0
    listed = [stored_document(image) for image in images.list()]
    listed_oci = [stored_oci_document(image) for image in oci_images.list()]
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


def test(args: argparse.Namespace) -> int:
    """`dgr test`: pytest on the project folder (the plugin builds, starts, runs the tests)."""
    code, counts = run_tests(args, project(args))
    emit(args, {"exitCode": code, **counts.document()})
    return code


def run_tests(args: argparse.Namespace, tested: Project) -> tuple[int, TestCounts]:
    """pytest's exit code and counts on `tested` (dgr/testrun.py)."""
    from dgr.testrun import run_tests as run_pytest

    extra = [a for a in getattr(args, "pytest_args", None) or [] if a != "--"]
    if getattr(args, "quiet", False):
        extra.insert(0, "-q")
    if getattr(args, "color", "auto") != "auto":
        extra.insert(0, f"--color={'yes' if args.color == 'always' else 'no'}")
    return run_pytest(tested, extra=extra, json_output=getattr(args, "json", False))


def install(args: argparse.Namespace) -> int:
    """`dgr install [-t] [--to store|podman|docker]`: build if needed, (test,) then add the
    image to the local store, or load it into podman's or docker's images."""
    from dgr.sign import current_signature
    from dgr.store import Store

    target = project(args)
    if getattr(args, "test", False) and run_tests(args, target)[0] != 0:
        raise DgrError("tests failed: image not installed", path=target.folder)
    opts = target.options
    built = target.build()
    destination = getattr(args, "to", "store")
    installed: list[dict[str, Any]] = []
    for result in built.results:
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
    emit(args, built.images_document(installed=installed))
    return 0


def export(args: argparse.Namespace) -> int:
    """`dgr export [-o FILE] [--format F]`: the image as an archive for podman/docker load."""
    from dgr.export import export_archive

    target = project(args)
    if args.output:  # checked before any build
        target.check_archive_destination(Path(args.output))
    built = target.build()
    archives = []
    for result in built.results:
        exported = export_archive(result, Path(args.output) if args.output else None, args.format)
        log.info("Wrote %s (%s, %s)", exported.path, exported.format, exported.reference)
        archives.append(
            {"path": str(exported.path), "format": exported.format, "reference": exported.reference}
        )
    emit(args, built.images_document(archive=archives), "\n".join(a["path"] for a in archives))
    return 0


def sign(args: argparse.Namespace) -> int:
    from dgr.sign import sign_image

    target = project(args)
    built = target.build()
    config = target.options.config
    signatures = [sign_image(result.workspace.aci, result.name, config) for result in built.results]
    emit(args, built.images_document(signature=[str(s) if s else None for s in signatures]))
    return 0


def cp(args: argparse.Namespace) -> int:
    dest = project(args).copy_out(args.path, Path(args.host_dir))
    log.info("Copied %s to %s", args.path, dest)
    emit(args, {"copied": str(dest)})
    return 0


def push(args: argparse.Namespace) -> int:
    """`dgr push [-t]`: build if needed, (test,) sign when configured, push to every target."""
    from dgr.push import prepare_signature, push_image, push_targets

    target = project(args)
    config = target.options.config
    push_targets(config)  # a bad push section fails before any build or test
    if getattr(args, "test", False) and run_tests(args, target)[0] != 0:
        raise DgrError("tests failed: nothing pushed", path=target.folder)
    built = target.build()
    pushed_per_image = []
    for result in built.results:
        signature = prepare_signature(result, config)
        pushed = push_image(result, config, signature=signature)
        if not args.json:
            for one in pushed:
                print(f"{one.location} {one.digest}".rstrip(), flush=True)
        pushed_per_image.append([one.document() for one in pushed])
    emit(args, built.images_document(pushed=pushed_per_image))
    return 0


def kube(args: argparse.Namespace) -> int:
    """`dgr kube`: build the pod if needed, write its Kubernetes Pod manifest, print its path."""
    output = Path(args.output) if args.output else None
    path, built = project(args).write_kube(args.registry, output)
    emit(args, {**built.document(), "kube": str(path)}, str(path))
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
