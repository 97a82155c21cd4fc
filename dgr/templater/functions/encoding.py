"""Template functions that encode and decode: base64, sha256, JSON, YAML."""

from __future__ import annotations

import json as _json
from typing import Any

from dgr.templater.values import FunctionError, _kind, _text, to_plain
from dgr.templater.yamlio import parse_yaml


def b64enc(text: str) -> str:
    """Standard base64 of the UTF-8 text."""
    import base64

    return base64.b64encode(_text(text, "b64enc").encode()).decode("ascii")


def b64dec(text: str) -> str:
    """The UTF-8 text whose standard base64 is given; invalid input is an error."""
    import base64
    import binascii

    try:
        return base64.b64decode(_text(text, "b64dec"), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise FunctionError(f"b64dec: not base64 of UTF-8 text ({exc})") from None


def sha256sum(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text."""
    import hashlib

    return hashlib.sha256(_text(text, "sha256sum").encode()).hexdigest()


def json_object(text: str) -> dict[str, Any]:
    """``json(s)``: the JSON object in s as a map; anything else is an error."""
    value = _parse_json(text, "json")
    if not isinstance(value, dict):
        raise FunctionError(f"json: expected a JSON object, got {_kind(value)}")
    return value


def json_array(text: str) -> list[Any]:
    """``jsonArray(s)``: the JSON array in s as a list; anything else is an error."""
    value = _parse_json(text, "jsonArray")
    if not isinstance(value, list):
        raise FunctionError(f"jsonArray: expected a JSON array, got {_kind(value)}")
    return value


def from_json(text: str) -> Any:
    """``fromJson(s)``: any JSON value."""
    return _parse_json(text, "fromJson")


def _parse_json(text: str, name: str) -> Any:
    try:
        return _json.loads(_text(text, name))
    except ValueError as exc:
        raise FunctionError(f"{name}: invalid JSON: {exc}") from None


def to_json(value: Any) -> str:
    """JSON indented by 2 spaces with sorted keys, no trailing newline."""
    return _json.dumps(to_plain(value), indent=2, sort_keys=True, ensure_ascii=False)


def to_yaml(value: Any) -> str:
    """Block-style YAML with sorted keys and **no** trailing newline (Helm's choice, not the
    original's: the template decides where lines end). Combine with ``indent``/``nindent``."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(
        to_plain(value), Dumper=dumper, default_flow_style=False, sort_keys=True, allow_unicode=True
    )
    if text.endswith("\n...\n"):  # a lone scalar gets an end-of-document marker
        text = text[: -len("...\n")]
    return text.rstrip("\n")


def from_yaml(text: str) -> Any:
    """``fromYaml(s)``: the YAML value in s (same loader as attribute files)."""
    import yaml

    try:
        return parse_yaml(_text(text, "fromYaml"))
    except yaml.YAMLError as exc:
        raise FunctionError(f"fromYaml: invalid YAML: {exc}") from None
