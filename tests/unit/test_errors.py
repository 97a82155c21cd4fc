from __future__ import annotations

import json

from dgr.errors import BuildError, DgrError, ManifestError, error_from_json
from dgr.fetch import FetchError


def test_an_error_renders_itself_whole() -> None:
    exc = ManifestError(
        "unknown key", path="/p/aci-manifest.yml", line=3, key="aci.ap", hint="did you mean app?"
    )
    exc.details = "line one\nline two\n"
    assert exc.render() == (
        "/p/aci-manifest.yml:3: unknown key (key: aci.ap) — did you mean app?\n  | line one\n  | line two"
    )
    assert DgrError("plain").render() == "plain"


def test_a_stored_error_comes_back_with_its_class_and_every_field() -> None:
    for exc in (
        BuildError("runlevel build failed", path="/p", hint="see the log", details="tail\n"),
        FetchError("no signature", key="sign", line=7),
        DgrError("generic"),
    ):
        again = error_from_json(json.loads(json.dumps(exc.to_json())))
        assert type(again) is type(exc)
        assert again.render() == exc.render()
        assert again.to_json() == exc.to_json()


def test_an_unknown_class_comes_back_as_a_dgr_error() -> None:
    again = error_from_json({"kind": "GoneError", "message": "m", "hint": "h"})
    assert type(again) is DgrError and str(again) == "m — h"
