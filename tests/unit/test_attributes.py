"""Attribute files: which are read, in which order, how they merge and override."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from dgr.errors import AttributesError
from dgr.templater.attributes import (
    collect_attribute_files,
    env_override,
    load_attributes,
    merge,
    read_order_file,
    write_order_file,
)
from dgr.templater.yamlio import parse_yaml


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def attrs(root: Path, env: dict[str, str] | None = None) -> dict[str, object]:
    return load_attributes(collect_attribute_files(root), env or {})


# --- which files --------------------------------------------------------------------------------


def test_only_yml_and_yaml_files_are_attribute_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "default: {a: 1}")
    write(tmp_path / "b.yaml", "default: {b: 2}")
    write(tmp_path / "README.md", "default: {c: 3}")
    write(tmp_path / "c.yml.bak", "not: [yaml")
    assert attrs(tmp_path) == {"a": 1, "b": 2}


def test_missing_attribute_folder_means_no_attributes(tmp_path: Path) -> None:
    assert collect_attribute_files(tmp_path / "nope") == []


def test_files_are_in_path_order_without_order_file(tmp_path: Path) -> None:
    for rel in ("b/x.yml", "a/z.yml", "a/sub/y.yml", "a.yml"):
        write(tmp_path / rel, "default: {}")
    rels = [p.relative_to(tmp_path).as_posix() for p in collect_attribute_files(tmp_path)]
    assert rels == ["a/sub/y.yml", "a/z.yml", "a.yml", "b/x.yml"]


def configmap(folder: Path, name: str, text: str) -> None:
    """The layout Kubernetes mounts a ConfigMap with."""
    write(folder / "..2024_01_01_00_00_00.123" / name, text)
    (folder / "..data").symlink_to("..2024_01_01_00_00_00.123")
    (folder / name).symlink_to(f"..data/{name}")


def test_configmap_layout_at_top_level_is_read_once(tmp_path: Path) -> None:
    configmap(tmp_path, "cm.yml", "default: {a: 1}")
    assert collect_attribute_files(tmp_path) == [tmp_path / "cm.yml"]
    assert attrs(tmp_path) == {"a": 1}


def test_configmap_layout_in_a_subfolder_is_read_once(tmp_path: Path) -> None:
    configmap(tmp_path / "pod", "cm.yml", "default: {a: 1}")
    assert collect_attribute_files(tmp_path) == [tmp_path / "pod" / "cm.yml"]


def test_symlink_loop_does_not_hang(tmp_path: Path) -> None:
    write(tmp_path / "a" / "x.yml", "default: {a: 1}")
    (tmp_path / "a" / "loop").symlink_to("..")
    assert attrs(tmp_path) == {"a": 1}


# --- precedence -------------------------------------------------------------------------------


def test_order_file_beats_alphabetical_order(tmp_path: Path) -> None:
    # The dependency is "z-base" and the image "a-app": alphabetical order would let the
    # dependency's value win.
    write(tmp_path / "z-base" / "attributes.yml", "default: {port: 1, base: true}")
    write(tmp_path / "a-app" / "attributes.yml", "default: {port: 2}")
    write_order_file(tmp_path, ["z-base/attributes.yml", tmp_path / "a-app" / "attributes.yml"])
    assert attrs(tmp_path) == {"port": 2, "base": True}


def test_without_order_file_path_order_decides(tmp_path: Path) -> None:
    write(tmp_path / "z-base" / "attributes.yml", "default: {port: 1}")
    write(tmp_path / "a-app" / "attributes.yml", "default: {port: 2}")
    assert attrs(tmp_path) == {"port": 1}


def test_files_written_at_start_come_above_listed_files(tmp_path: Path) -> None:
    write(tmp_path / "z-base" / "attributes.yml", "default: {ip: none, x: 1}")
    write(tmp_path / "pod" / "p.yml", "default: {ip: pod}")
    write_order_file(tmp_path, ["z-base/attributes.yml", "pod/p.yml"])
    # written by a prestart-early script, not in the order file; "a" sorts before both
    write(tmp_path / "a-base" / "prestart.yml", "default: {ip: 10.0.0.1}")
    assert attrs(tmp_path) == {"ip": "10.0.0.1", "x": 1}


def test_full_precedence_chain(tmp_path: Path) -> None:
    keys = ["dep", "image", "pod", "prestart", "override", "env"]
    write(tmp_path / "zz-dep" / "a.yml", "default: {" + ", ".join(f"{k}: dep" for k in keys) + "}")
    write(tmp_path / "yy-image" / "a.yml", "default: {" + ", ".join(f"{k}: image" for k in keys[1:]) + "}")
    write(tmp_path / "pod" / "a.yml", "default: {" + ", ".join(f"{k}: pod" for k in keys[2:]) + "}")
    write_order_file(tmp_path, ["zz-dep/a.yml", "yy-image/a.yml", "pod/a.yml"])
    write(
        tmp_path / "aa" / "prestart.yml", "default: {prestart: prestart, override: prestart, env: prestart}"
    )
    # an override in the lowest-precedence file still beats every default
    write(tmp_path / "zz-dep" / "b.yml", "override: {override: override, env: override}")
    write_order_file(tmp_path, ["zz-dep/b.yml", "zz-dep/a.yml", "yy-image/a.yml", "pod/a.yml"])
    result = attrs(tmp_path, {"TEMPLATER_OVERRIDE": '{"env": "env"}'})
    assert result == {k: k for k in keys}


def test_override_wins_whatever_the_file_order(tmp_path: Path) -> None:
    write(tmp_path / "1.yml", "override: {a: over}")
    write(tmp_path / "2.yml", "default: {a: def}")
    assert attrs(tmp_path) == {"a": "over"}


# --- merging ---------------------------------------------------------------------------------


def test_maps_merge_recursively_and_lists_replace(tmp_path: Path) -> None:
    write(
        tmp_path / "10.yml",
        "default: {list: [1, 2, 3], map: {a: 1, b: {c: 2, d: 3}}}\noverride: {map: {b: {c: 20}}}",
    )
    write(tmp_path / "sub" / "20.yml", "default: {list: [9], map: {b: {e: 5}}}")
    assert attrs(tmp_path) == {"list": [9], "map": {"a": 1, "b": {"c": 20, "d": 3, "e": 5}}}


def test_merge_does_not_modify_its_inputs() -> None:
    base = {"a": {"b": 1}}
    merge(base, {"a": {"c": 2}})
    assert base == {"a": {"b": 1}}


def test_empty_default_does_not_wipe_earlier_defaults(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "default: {a: 1}")
    write(tmp_path / "b.yml", "default:\n")
    assert attrs(tmp_path) == {"a": 1}


def test_empty_file_is_skipped(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "default: {a: 1}")
    write(tmp_path / "b.yml", "")
    assert attrs(tmp_path) == {"a": 1}


def test_other_root_keys_are_ignored(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "default: {a: 1}\nnotes: {b: 2}")
    assert attrs(tmp_path) == {"a": 1}


def test_null_inside_a_map_replaces(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "default: {a: {b: 1}}")
    write(tmp_path / "b.yml", "default: {a: ~}")
    assert attrs(tmp_path) == {"a": None}


def test_keys_are_strings_as_written() -> None:
    assert parse_yaml("80: a\non: b\n0644: c") == {"80": "a", "on": "b", "0644": "c"}


def test_values_keep_yaml_types_but_dates_and_times_stay_strings() -> None:
    assert parse_yaml("a: 0644\nb: yes\nc: 2024-01-01\nd: 10:20\ne: 1.5\nf: 12345678901234567890") == {
        "a": 0o644,
        "b": True,
        "c": "2024-01-01",
        "d": "10:20",
        "e": 1.5,
        "f": 12345678901234567890,
    }


# --- errors ----------------------------------------------------------------------------------


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yml", "default:\n  a: 1\n  b: [\n")
    with pytest.raises(AttributesError) as err:
        attrs(tmp_path)
    assert err.value.path == str(path) and err.value.line is not None and err.value.line >= 3


def test_top_level_list_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yml", "- a\n- b\n")
    with pytest.raises(AttributesError, match="top level must be a map") as err:
        attrs(tmp_path)
    assert err.value.path == str(path)


def test_default_that_is_not_a_map_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "default: [1]")
    with pytest.raises(AttributesError, match="'default:' must be a map"):
        attrs(tmp_path)


# --- environment override ----------------------------------------------------------------------


def test_json_override_merges_on_top(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "default: {a: {b: 1, c: 2}}\noverride: {a: {c: 3}}")
    assert attrs(tmp_path, {"TEMPLATER_OVERRIDE": '{"a": {"c": 4}}'}) == {"a": {"b": 1, "c": 4}}


@pytest.mark.parametrize("prefix", ["", "base64,"])
def test_base64_override_with_or_without_prefix(prefix: str) -> None:
    encoded = base64.b64encode(b'{"a": 1}').decode()
    assert env_override({"TEMPLATER_OVERRIDE_BASE64": prefix + encoded}) == {"a": 1}


def test_base64_prefixed_value_in_plain_variable() -> None:
    encoded = base64.b64encode(b'{"a": 1}').decode()
    assert env_override({"TEMPLATER_OVERRIDE": "base64," + encoded}) == {"a": 1}


def test_base64_variable_wins_over_plain_one() -> None:
    encoded = base64.b64encode(b'{"a": "b64"}').decode()
    env = {"TEMPLATER_OVERRIDE": '{"a": "plain"}', "TEMPLATER_OVERRIDE_BASE64": encoded}
    assert env_override(env) == {"a": "b64"}


def test_named_override_variable() -> None:
    assert env_override({"MY_VAR": '{"a": 1}', "TEMPLATER_OVERRIDE": '{"a": 2}'}, "MY_VAR") == {"a": 1}


def test_malformed_override_json_names_the_variable() -> None:
    with pytest.raises(AttributesError, match=r"\$TEMPLATER_OVERRIDE is not valid JSON"):
        env_override({"TEMPLATER_OVERRIDE": "{a: 1"})


def test_override_that_is_not_an_object_is_an_error() -> None:
    with pytest.raises(AttributesError, match="must hold a JSON object"):
        env_override({"TEMPLATER_OVERRIDE": "[1, 2]"})


def test_invalid_base64_override_names_the_variable() -> None:
    with pytest.raises(AttributesError, match=r"\$TEMPLATER_OVERRIDE_BASE64 is not valid base64"):
        env_override({"TEMPLATER_OVERRIDE_BASE64": "%%%"})


def test_env_defaults_to_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPLATER_OVERRIDE", json.dumps({"x": 1}))
    monkeypatch.delenv("TEMPLATER_OVERRIDE_BASE64", raising=False)
    assert load_attributes([], None) == {"x": 1}


# --- attribute templates --------------------------------------------------------------------------


def resolve(text: str, env: dict[str, str] | None = None, tmp: Path | None = None) -> dict[str, object]:
    assert tmp is not None
    write(tmp / "a.yml", text)
    return attrs(tmp, env)


def test_attribute_template_sees_other_attributes(tmp_path: Path) -> None:
    result = resolve("default: {dns: {ns: [10.0.0.1]}, first: '{{ dns.ns[0] }}'}", tmp=tmp_path)
    assert result["first"] == "10.0.0.1"


def test_rendered_attribute_is_read_back_as_yaml(tmp_path: Path) -> None:
    result = resolve(
        "default: {n: '{{ 3 * 3 }}', flag: '{{ 1 == 1 }}', hosts: [a, b], l: '{{ toYaml(hosts) }}'}",
        tmp=tmp_path,
    )
    assert result["n"] == 9 and result["flag"] is True and result["l"] == ["a", "b"]


def test_printed_list_reads_back_as_list(tmp_path: Path) -> None:
    result = resolve("default: {hosts: [{name: a}], copy: '{{ hosts }}'}", tmp=tmp_path)
    assert result["copy"] == [{"name": "a"}]


def test_rendered_text_that_yaml_would_mangle_stays_a_string(tmp_path: Path) -> None:
    result = resolve("default: {c: fff, color: '#{{ c }}', text: '  {{ c }} # not a comment'}", tmp=tmp_path)
    assert result["color"] == "#fff" and result["text"] == "  fff # not a comment"


def test_attribute_templates_chain(tmp_path: Path) -> None:
    result = resolve("default: {a: '{{ b }}', b: '{{ c }}', c: 1, d: '{{ a + 1 }}'}", tmp=tmp_path)
    assert result == {"a": 1, "b": 1, "c": 1, "d": 2}


def test_attribute_template_cycle_names_the_keys(tmp_path: Path) -> None:
    with pytest.raises(AttributesError, match=r"cycle: a -> x\.b -> a"):
        resolve("default: {a: '{{ x.b }}', x: {b: '{{ a }}'}}", tmp=tmp_path)


def test_attribute_template_sees_the_override(tmp_path: Path) -> None:
    result = resolve(
        "default: {host: h1, url: 'http://{{ host }}/'}", {"TEMPLATER_OVERRIDE": '{"host": "h2"}'}, tmp_path
    )
    assert result["url"] == "http://h2/"


def test_attribute_keys_are_never_rendered(tmp_path: Path) -> None:
    result = resolve("default: {'{{ a }}': 1, a: 2}", tmp=tmp_path)
    assert result == {"{{ a }}": 1, "a": 2}


def test_attribute_template_with_missing_value_names_key_and_attribute(tmp_path: Path) -> None:
    with pytest.raises(AttributesError, match=r"missing attribute 'nope'") as err:
        resolve("default: {x: {y: '{{ nope }}'}}", tmp=tmp_path)
    assert err.value.key == "x.y"


def test_attribute_templates_in_lists_and_type_tests_resolve_first(tmp_path: Path) -> None:
    result = resolve("default: {l: ['{{ n }}'], n: '{{ 2 }}', s: '{{ isString(n) }}'}", tmp=tmp_path)
    assert result == {"l": [2], "n": 2, "s": False}


def test_write_order_file_rejects_paths_outside(tmp_path: Path) -> None:
    with pytest.raises(AttributesError):
        write_order_file(tmp_path, ["../x.yml"])


def test_order_file_lists_relative_paths(tmp_path: Path) -> None:
    path = write_order_file(tmp_path, [tmp_path / "a" / "x.yml", "b/y.yml"])
    assert path.read_text() == "a/x.yml\nb/y.yml\n"
    assert not os.path.exists(str(path) + ".tmp")


def test_read_order_file_round_trips_and_tolerates_absence(tmp_path: Path) -> None:
    assert read_order_file(tmp_path) == []
    write_order_file(tmp_path, ["a/x.yml", "b/y.yml"])
    assert read_order_file(tmp_path) == ["a/x.yml", "b/y.yml"]
