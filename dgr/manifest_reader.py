"""Validation of a rendered `aci-manifest.yml` into the model of dgr/manifest.py.

Walks the YAML tree checking keys and types: unknown keys are an error that names the key,
the file and the line. The same reader validates pod manifests (dgr/podmanifest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from dgr.errors import ManifestError
from dgr.manifest import (
    DEFAULT_EXEC,
    Aci,
    App,
    AppMountPoint,
    Builder,
    HostMount,
    Isolator,
    Manifest,
    NameValue,
    Port,
    Tester,
)
from dgr.names import ImageName, is_ac_identifier, is_ac_name
from dgr.readiness import ANNOTATION as READINESS_ANNOTATION
from dgr.readiness import KINDS as READINESS_KINDS
from dgr.readiness import Readiness
from dgr.reference import Reference, parse_dependency
from dgr.yamlload import LineDict, parse_yaml


class ManifestReader:
    """Walks the YAML tree, checking keys and types, with the file and line in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[str, int] = {}  # dotted key -> line, filled as mappings are read

    def fail(
        self, message: str, key: str, where: Any = None, child: str | None = None, hint: str | None = None
    ) -> ManifestError:
        line = None
        if isinstance(where, LineDict) and child is not None:
            line = where.lines.get(child)
        return ManifestError(message, path=self.path, line=line or self.line_of(key), key=key, hint=hint)

    @contextmanager
    def locating(self) -> Iterator[None]:
        """Give a line to any ManifestError raised in the block that names a key but no line."""
        try:
            yield
        except ManifestError as exc:
            if exc.line is None and exc.key:
                exc.line = self.line_of(exc.key)
            raise

    def line_of(self, key: str) -> int | None:
        """The line of `key`, or of the closest enclosing key that has one."""
        while key:
            if key in self.lines:
                return self.lines[key]
            cut = max(key.rfind("."), key.rfind("["))
            key = key[:cut] if cut > 0 else ""
        return None

    def mapping(self, data: Any, key: str, known: set[str]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise self.fail(f"{key or 'manifest'} must be a mapping", key)
        if isinstance(data, LineDict):
            for child, line in data.lines.items():
                self.lines[f"{key}.{child}" if key else child] = line
        for child in data:
            if child not in known:
                where = f"{key}.{child}" if key else str(child)
                raise self.fail(
                    f"unknown key {where!r} in manifest (known here: {', '.join(sorted(known))})",
                    where,
                    data,
                    str(child),
                )
        return data

    def string(self, data: Any, key: str, default: str = "") -> str:
        if data is None:
            return default
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            raise self.fail(f"{key} must be a string", key)
        return str(data)

    def text(self, data: Any, key: str) -> str:
        """A string as written: a number or a boolean is refused (`name: 5`)."""
        if data is None:
            return ""
        if not isinstance(data, str):
            raise self.fail(f"{key} must be a string, not {_kind(data)} ({data!r})", key)
        return data

    def listing(self, data: Any, key: str) -> list[Any]:
        if data is None:
            return []
        if not isinstance(data, list):
            raise self.fail(f"{key} must be a list", key)
        return data

    def strings(self, data: Any, key: str) -> tuple[str, ...]:
        return tuple(self.string(item, f"{key}[{i}]") for i, item in enumerate(self.listing(data, key)))

    def name_values(self, data: Any, key: str, *, env: bool = False) -> tuple[NameValue, ...]:
        result = []
        for i, item in enumerate(self.listing(data, key)):
            where = f"{key}[{i}]"
            item = self.mapping(item, where, {"name", "value"})
            name = self.string(item.get("name"), f"{where}.name")
            if not name:
                raise self.fail(f"{where}.name is mandatory", where)
            if not env and not is_ac_identifier(name):
                raise self.fail(f"{where}.name {name!r} is not a valid appc identifier", where)
            value = item.get("value")
            text = "" if value is None else self.scalar_text(value, f"{where}.value")
            result.append(NameValue(name, text))
        return tuple(result)

    def scalar_text(self, value: Any, key: str) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return self.string(value, key)

    def images(self, data: Any, key: str) -> tuple[Reference, ...]:
        """Dependencies: appc image names, or OCI references (dgr/ociref.py)."""
        return tuple(
            parse_dependency(self.text(item, f"{key}[{i}]"), source=self.path, key=f"{key}[{i}]")
            for i, item in enumerate(self.listing(data, key))
        )

    def host_mounts(self, data: Any, key: str) -> tuple[HostMount, ...]:
        result = []
        for i, item in enumerate(self.listing(data, key)):
            where = f"{key}[{i}]"
            item = self.mapping(item, where, {"from", "to", "optional"})
            source = self.text(item.get("from"), f"{where}.from")
            to = self.text(item.get("to"), f"{where}.to")
            if not source or not to:
                raise self.fail(f"{where} needs both 'from' and 'to'", where)
            if not to.startswith("/"):
                raise self.fail(f"{where}.to must be an absolute path, got {to!r}", where)
            optional = self.boolean(item.get("optional"), f"{where}.optional")
            line = self.line_of(f"{where}.from")
            result.append(HostMount(source, to, optional, key=f"{where}.from", line=line))
        return tuple(result)

    def isolators(self, data: Any, key: str) -> tuple[Isolator, ...]:
        result = []
        for i, item in enumerate(self.listing(data, key)):
            where = f"{key}[{i}]"
            item = self.mapping(item, where, {"name", "value"})
            name = self.string(item.get("name"), f"{where}.name")
            if not is_ac_identifier(name):
                raise self.fail(f"{where}.name {name!r} is not a valid isolator name", where)
            result.append(Isolator(name, item.get("value")))
        return tuple(result)

    def integer(self, data: Any, key: str, default: int) -> int:
        if data is None:
            return default
        if isinstance(data, bool) or not isinstance(data, int):
            raise self.fail(f"{key} must be an integer", key)
        return data

    def boolean(self, data: Any, key: str) -> bool:
        if data is None:
            return False
        if not isinstance(data, bool):
            raise self.fail(f"{key} must be true or false", key)
        return data

    def builder(self, data: Any, key: str) -> Builder:
        data = self.mapping(data, key, {"image", "environment", "dependencies", "mountPoints"})
        image = self.text(data.get("image"), f"{key}.image")
        return Builder(
            image=ImageName.parse(image, source=self.path, key=f"{key}.image") if image else None,
            environment=self.name_values(data.get("environment"), f"{key}.environment", env=True),
            dependencies=self.images(data.get("dependencies"), f"{key}.dependencies"),
            mount_points=self.host_mounts(data.get("mountPoints"), f"{key}.mountPoints"),
        )

    def app(self, data: Any, key: str) -> App:
        known = {
            "exec", "user", "group", "supplementaryGIDs", "workingDirectory", "environment",
            "mountPoints", "ports", "isolators",
        }  # fmt: skip
        data = self.mapping(data, key, known)
        exec_ = self.strings(data.get("exec"), f"{key}.exec") or DEFAULT_EXEC
        workdir = self.string(data.get("workingDirectory"), f"{key}.workingDirectory")
        if workdir and not workdir.startswith("/"):
            raise self.fail(f"{key}.workingDirectory must be an absolute path", f"{key}.workingDirectory")
        gids = tuple(
            self.integer(g, f"{key}.supplementaryGIDs[{i}]", 0)
            for i, g in enumerate(self.listing(data.get("supplementaryGIDs"), f"{key}.supplementaryGIDs"))
        )
        return App(
            exec=exec_,
            user=self.string(data.get("user"), f"{key}.user", "0") or "0",
            group=self.string(data.get("group"), f"{key}.group", "0") or "0",
            supplementary_gids=gids,
            working_directory=workdir,
            environment=self.name_values(data.get("environment"), f"{key}.environment", env=True),
            mount_points=self.app_mounts(data.get("mountPoints"), f"{key}.mountPoints"),
            ports=self.ports(data.get("ports"), f"{key}.ports"),
            isolators=self.isolators(data.get("isolators"), f"{key}.isolators"),
            given=tuple(sorted(data)),
        )

    def app_mounts(self, data: Any, key: str) -> tuple[AppMountPoint, ...]:
        result = []
        for i, item in enumerate(self.listing(data, key)):
            where = f"{key}[{i}]"
            item = self.mapping(item, where, {"name", "path", "readOnly"})
            name = self.string(item.get("name"), f"{where}.name")
            path = self.string(item.get("path"), f"{where}.path")
            if not is_ac_name(name):
                raise self.fail(f"{where}.name {name!r} must be lower case alphanumerics and '-'", where)
            if not path.startswith("/"):
                raise self.fail(f"{where}.path must be an absolute path", where)
            result.append(AppMountPoint(name, path, self.boolean(item.get("readOnly"), f"{where}.readOnly")))
        return tuple(result)

    def ports(self, data: Any, key: str) -> tuple[Port, ...]:
        result = []
        for i, item in enumerate(self.listing(data, key)):
            where = f"{key}[{i}]"
            item = self.mapping(item, where, {"name", "protocol", "port", "count", "socketActivated"})
            name = self.string(item.get("name"), f"{where}.name")
            if not is_ac_name(name):
                raise self.fail(f"{where}.name {name!r} must be lower case alphanumerics and '-'", where)
            port = self.integer(item.get("port"), f"{where}.port", 0)
            count = self.integer(item.get("count"), f"{where}.count", 1)
            if not 1 <= port <= 65535 or count < 1 or port + count > 65536:
                raise self.fail(f"{where}.port must be in 1-65535 (count >= 1)", where)
            protocol = self.string(item.get("protocol"), f"{where}.protocol", "tcp") or "tcp"
            socket = self.boolean(item.get("socketActivated"), f"{where}.socketActivated")
            result.append(Port(name, port, protocol, count, socket))
        return tuple(result)

    def tester(self, data: Any, key: str) -> Tester:
        data = self.mapping(data, key, {"builder", "aci", "readiness"})
        aci = self.mapping(data.get("aci"), f"{key}.aci", {"dependencies", "app"})
        app = self.mapping(aci.get("app"), f"{key}.aci.app", {"environment", "isolators"})
        return Tester(
            builder=self.builder(data.get("builder"), f"{key}.builder"),
            dependencies=self.images(aci.get("dependencies"), f"{key}.aci.dependencies"),
            environment=self.name_values(app.get("environment"), f"{key}.aci.app.environment", env=True),
            isolators=self.isolators(app.get("isolators"), f"{key}.aci.app.isolators"),
        )

    def aci(self, data: Any, key: str) -> Aci:
        data = self.mapping(data, key, {"dependencies", "annotations", "pathWhitelist", "app"})
        return Aci(
            dependencies=self.images(data.get("dependencies"), f"{key}.dependencies"),
            annotations=self.name_values(data.get("annotations"), f"{key}.annotations"),
            path_whitelist=self.strings(data.get("pathWhitelist"), f"{key}.pathWhitelist"),
            app=self.app(data.get("app"), f"{key}.app"),
        )


def parse_manifest(text: str, path: Path, *, version_unknown: bool = False) -> Manifest:
    """Validate rendered manifest `text` (YAML) read from `path`; with `version_unknown`
    (before the build, see load_manifest) the version of `name` is left out."""
    reader = ManifestReader(path)
    with reader.locating():
        return _parse_manifest(text, path, reader, version_unknown)


def _parse_manifest(text: str, path: Path, reader: ManifestReader, version_unknown: bool) -> Manifest:
    data = parse_yaml(text, path, ManifestError, lines=True)
    data = reader.mapping(data, "", {"name", "builder", "build", "tester", "aci"})
    raw_name = reader.text(data.get("name"), "name")
    if not raw_name.strip():
        raise ManifestError("name is mandatory in manifest", path=path, key="name")
    if version_unknown:
        # The version depends on an attribute a build script has not written yet.
        raw_name = raw_name.split(":", 1)[0]
    name = ImageName.parse(raw_name, source=path)
    build = reader.mapping(data.get("build"), "build", {"mountPoints", "timeout", "scriptTimeout"})
    manifest = Manifest(
        name=name,
        path=path,
        builder=reader.builder(data.get("builder"), "builder"),
        build_mount_points=reader.host_mounts(build.get("mountPoints"), "build.mountPoints"),
        tester=reader.tester(data.get("tester"), "tester"),
        aci=reader.aci(data.get("aci"), "aci"),
        build_timeout=_optional_seconds(reader, build.get("timeout"), "build.timeout"),
        script_timeout=_optional_seconds(reader, build.get("scriptTimeout"), "build.scriptTimeout"),
    )
    _refuse_self_dependency(reader, manifest)
    return with_readiness(reader, data.get("tester"), manifest)


def _refuse_self_dependency(reader: ManifestReader, manifest: Manifest) -> None:
    """An image cannot be built on itself (a dependency on another version of its name, from
    the store or discovery, is fine)."""
    own = manifest.name
    for key, names in (
        ("aci.dependencies", manifest.aci.dependencies),
        ("builder.dependencies", manifest.builder.dependencies),
    ):
        for i, dep in enumerate(names):
            if not isinstance(dep, ImageName):
                continue  # an OCI image is not built from a project
            if dep.name == own.name and (not dep.version or dep.version == own.version):
                raise reader.fail(
                    f"dependency cycle: {own.name} depends on itself",
                    f"{key}[{i}]",
                    hint="an image cannot be built on itself: remove it from its dependencies",
                )


def _optional_seconds(reader: ManifestReader, value: Any, key: str) -> float | None:
    return None if value is None else _seconds(reader, value, key, 0.0)


def _kind(value: Any) -> str:
    """How a YAML value reads in an error message."""
    kinds = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a mapping"}
    return kinds.get(type(value), type(value).__name__)


# --- tester.readiness (dgr/readiness.py) ----------------------------------------------------

READINESS_KEY = "tester.readiness"
READINESS_OPTIONS = ("status", "timeout", "interval")


def with_readiness(reader: ManifestReader, tester_data: Any, manifest: Manifest) -> Manifest:
    """`manifest` with the readiness check of `tester_data` (the raw `tester` mapping), also
    as an annotation of the image (so that the image carries it, see dgr/readiness.py)."""
    raw = tester_data.get("readiness") if isinstance(tester_data, dict) else None
    if raw is None:
        return manifest
    readiness = parse_readiness(reader, raw, manifest.aci.app.ports)
    annotations = (*manifest.aci.annotations, NameValue(READINESS_ANNOTATION, readiness.to_json()))
    return replace(
        manifest,
        tester=replace(manifest.tester, readiness=readiness),
        aci=replace(manifest.aci, annotations=annotations),
    )


def parse_readiness(reader: ManifestReader, raw: Any, ports: tuple[Port, ...]) -> Readiness:
    """The check of `tester.readiness`: one kind key (tcp, http, log, command) and options."""
    import re
    from urllib.parse import urlsplit

    key = READINESS_KEY
    if not isinstance(raw, dict):
        raise reader.fail(f"{key} must be a mapping with one of: {', '.join(READINESS_KINDS)}", key)
    reader.mapping(raw, key, set(raw))  # records the lines of its keys
    for name in raw:
        if name not in READINESS_KINDS and name not in READINESS_OPTIONS:
            raise reader.fail(
                f"unknown readiness check kind {name!r} in {key} "
                f"(kinds: {', '.join(READINESS_KINDS)}; options: {', '.join(READINESS_OPTIONS)})",
                f"{key}.{name}",
            )
    kinds = [name for name in READINESS_KINDS if name in raw]
    if len(kinds) != 1:
        found = f"several ({', '.join(kinds)})" if kinds else "none"
        raise reader.fail(
            f"{key} needs exactly one check of kind {', '.join(READINESS_KINDS)}; found {found}", key
        )
    kind = kinds[0]
    where, value = f"{key}.{kind}", raw[kind]
    timeout = _seconds(reader, raw.get("timeout"), f"{key}.timeout", 60.0)
    interval = _seconds(reader, raw.get("interval"), f"{key}.interval", 1.0)
    if "status" in raw and kind != "http":
        raise reader.fail(f"{key}.status is for http checks only", f"{key}.status")
    common: dict[str, Any] = {"kind": kind, "timeout": timeout, "interval": interval}
    if kind == "tcp":
        return Readiness(port=_check_port(reader, value, where, ports), **common)
    if kind == "http":
        url = reader.string(value, where)
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise reader.fail(f"{where} must be an http:// URL, e.g. http://127.0.0.1:8080/health", where)
        try:
            parts.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError:
            raise reader.fail(f"{where}: bad port in {url!r}", where) from None
        status = reader.integer(raw.get("status"), f"{key}.status", 200)
        if not 100 <= status <= 599:
            raise reader.fail(f"{key}.status must be an HTTP status (100-599)", f"{key}.status")
        return Readiness(url=url, status=status, **common)
    if kind == "log":
        pattern = reader.string(value, where)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise reader.fail(f"{where} is not a valid regular expression: {exc}", where) from None
        if not pattern:
            raise reader.fail(f"{where} must not be empty", where)
        return Readiness(pattern=pattern, **common)
    if isinstance(value, str):
        if not value.strip():
            raise reader.fail(f"{where} must not be empty", where)
        return Readiness(command=(value,), shell=True, **common)
    command = reader.strings(value, where)
    if not command:
        raise reader.fail(f"{where} must be a command line or a non-empty list", where)
    return Readiness(command=command, **common)


def _seconds(reader: ManifestReader, value: Any, key: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise reader.fail(f"{key} must be a positive number of seconds", key)
    return float(value)


def _check_port(reader: ManifestReader, value: Any, where: str, ports: tuple[Port, ...]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 65535:
            raise reader.fail(f"{where} must be a port in 1-65535 or a port name", where)
        return value
    name = reader.string(value, where)
    for port in ports:
        if port.name == name:
            return port.port
    known = ", ".join(p.name for p in ports) or "none"
    raise reader.fail(f"{where}: no port named {name!r} in aci.app.ports (known: {known})", where)
