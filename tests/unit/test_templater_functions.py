"""Template functions and printing rules, one behaviour per test."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from dgr.errors import TemplateError
from dgr.templater import render_string


def r(text: str, **attributes: Any) -> str:
    return render_string(text, attributes, name="t.tmpl")


# --- printing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (1000000, "1000000"),
        (1234567, "1234567"),
        (1.5, "1.5"),
        (1e20, "100000000000000000000"),
        (1e-05, "0.00001"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        (["a", 1, True], '["a", 1, true]'),
        ({"k": None}, '{"k": null}'),
    ],
)
def test_values_print_as_written_in_config_files(value: Any, printed: str) -> None:
    assert r("{{ v }}", v=value) == printed


def test_trailing_newline_of_template_is_kept() -> None:
    assert r("a\n\n") == "a\n\n"
    assert r("a") == "a"


def test_join_prints_items_like_output() -> None:
    assert (
        r("{{ join(l, ',') }}|{{ l | join('-') }}", l=[1, True, 1000000]) == "1,true,1000000|1-true-1000000"
    )


def test_join_accepts_split_output() -> None:
    assert r("{{ join(split('a.b.c', '.'), '/') }}") == "a/b/c"


# --- dgr's own set ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ base('/a/b.conf') }} {{ dir('/a/b.conf') }}", "b.conf /a"),
        ("{{ base('/a/b/') }} {{ dir('b') }}", "b ."),
        ("{{ split('a,b', ',') }}", '["a", "b"]'),
        ("{{ replace('aaa', 'a', 'b') }} {{ replace('aaa', 'a', 'b', 2) }}", "bbb bba"),
        ("{{ 'aaa' | replace('a', 'b') }}", "bbb"),
        ("{{ repeat('ab', 3) }}", "ababab"),
        ("{{ contains('hello', 'ell') }} {{ contains(['a'], 'a') }}", "true true"),
        ("{{ hasPrefix('hello', 'he') }} {{ hasSuffix('hello', 'he') }}", "true false"),
        ("{{ toUpper('aB') }}{{ 'aB' | toLower }}", "ABab"),
        ("{{ json('{\"a\": 1}').a }} {{ jsonArray('[1, 2]')[1] }}", "1 2"),
        (
            "{{ add(port, 1) }} {{ sub(10, 3) }} {{ mul(2, 3, 4) }} {{ div(7, 2) }} {{ div(-7, 2) }}",
            "8081 7 24 3 -3",
        ),
        ("{{ mod(7, 3) }} {{ mod(-7, 3) }} {{ div(1.0, 4) }}", "1 -1 0.25"),
        ("{{ add1(port) }}", "8081"),
        ("{{ toJson({'b': 1, 'a': [1]}) }}", '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'),
        ("{{ toYaml({'b': 1, 'a': [1, 2]}) }}|", "a:\n- 1\n- 2\nb: 1|"),
        ("{{ toYaml('x') }}|", "x|"),
    ],
)
def test_dgr_functions(template: str, expected: str) -> None:
    assert r(template, port=8080) == expected


def test_arithmetic_accepts_yaml_numbers_and_numeric_strings() -> None:
    assert r("{{ add(a, b, '3') }}", a=1, b=1.5) == "5.5"


def test_arithmetic_on_non_number_is_an_error_naming_function() -> None:
    with pytest.raises(TemplateError, match="add: expected a number"):
        r("{{ add('x', 1) }}")


def test_division_by_zero_is_an_error() -> None:
    with pytest.raises(TemplateError, match="division by zero"):
        r("{{ div(1, 0) }}")


def test_or_def() -> None:
    assert (
        r(
            "{{ orDef(a, 'd') }} {{ orDef(n, 'd') }} {{ orDef(missing, 'd') }} {{ orDef(f, 'd') }}",
            a="a",
            n=None,
            f=False,
        )
        == "a d d false"
    )


def test_or_defs() -> None:
    assert (
        r("{{ orDefs(l, 'd') }} {{ orDefs(e, 'd') }} {{ orDefs(missing, 'd') }}", l=["x"], e=[])
        == '["x"] ["d"] ["d"]'
    )


def test_if_or_def_counts_false_and_empty_as_present() -> None:
    assert (
        r(
            "{{ ifOrDef(f, 'y', 'n') }}{{ ifOrDef(s, 'y', 'n') }}{{ ifOrDef(missing, 'y', 'n') }}",
            f=False,
            s="",
        )
        == "yyn"
    )


def test_pairs_builds_a_map() -> None:
    assert r("{{ pairs('a', 1, 'b', x).b }}", x="X") == "X"


def test_pairs_with_odd_count_is_an_error() -> None:
    with pytest.raises(TemplateError, match="odd number"):
        r("{{ pairs('a') }}")


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("isString(s)", "true"),
        ("isString(n)", "false"),
        ("isArray(l)", "true"),
        ("isMap(m)", "true"),
        ("isMap(l)", "false"),
        ("isNil(z)", "true"),
        ("isNil(missing)", "true"),
        ("isNil(s)", "false"),
        ("isKind(m, 'map')", "true"),
        ("isKind(l, 'slice')", "true"),
        ("isType(s, 'string')", "true"),
        ("isType(n, 'float64')", "true"),
        ("isType(l, '[]interface {}')", "true"),
        ("isType(m, 'map[string]interface {}')", "true"),
        ("isMapFirst(m, 'a')", "true"),
        ("isMapFirst(m, 'b')", "false"),
        ("isMapLast(m, 'c')", "true"),
        ("isMapLast(m, 'b')", "false"),
        ("howDeep(root, root.m)", "1"),
        ("howDeep(root, root.m.c)", "2"),
        ("howDeep(root, {'zz': 1})", "0"),
        ("howDeep(root, 's')", "0"),
    ],
)
def test_type_tests(expr: str, expected: str) -> None:
    m = {"b": 1, "a": 2, "c": {"x": 1}}
    values = {"s": "str", "n": 1, "l": [1], "m": m, "z": None}
    assert r("{{ " + expr + " }}", root=values, **values) == expected


def test_datetime_and_now_are_times() -> None:
    assert r("{{ datetime().year > 2000 }} {{ now().year > 2000 }}") == "true true"


def test_getenv_with_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGR_T_SET", "v")
    monkeypatch.delenv("DGR_T_UNSET", raising=False)
    assert (
        r("{{ getenv('DGR_T_SET') }} {{ getenv('DGR_T_UNSET', 'd') }} [{{ env('DGR_T_UNSET') }}]")
        == "v d []"
    )


def test_expandenv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGR_T_SET", "v")
    monkeypatch.delenv("DGR_T_UNSET", raising=False)
    assert r("{{ expandenv('a=$DGR_T_SET b=${DGR_T_UNSET}.') }}") == "a=v b=."


# --- sprig helpers -----------------------------------------------------------------------------


def test_sprig_add1_keys_sort_alpha() -> None:
    assert r(
        "{{ add1(n) }} {{ keys(m) | sortAlpha | join(',') }} {{ sortAlpha(keys(m)) }}",
        n=1,
        m={"b": 1, "a": 2},
    ) == ('2 a,b ["a", "b"]')


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ b64enc('hi') }}", base64.b64encode(b"hi").decode()),
        ("{{ b64dec('aGk=') }}", "hi"),
        ("{{ sha256sum('hi') }}", hashlib.sha256(b"hi").hexdigest()),
        ("{{ indent('a\nb', 2) }}", "  a\n  b"),
        ("x:{{ nindent('a', 2) }}", "x:\n  a"),
        ("{{ quote('a\"b') }} {{ squote('a') }}", '"a\\"b" \'a\''),
        ("{{ trim('  a ') }}|{{ trimPrefix('abc', 'a') }}|{{ 'abc' | trimSuffix('c') }}", "a|bc|ab"),
        ("{{ upper('a') }}{{ lower('B') }} {{ title('hello wORLD') }}", "Ab Hello WORLD"),
        ("{{ list(1, 2) }} {{ dict('a', 1).a }} {{ dict(b=2).b }}", "[1, 2] 1 2"),
        ("{{ hasKey({'a': 1}, 'a') }} {{ hasKey({'a': 1}, 'b') }}", "true false"),
        ("{{ toString(true) }} {{ atoi('42') + 1 }} {{ int('7') }} {{ float(2) }}", "true 43 7 2.0"),
        ("{{ max(1, 5, 3) }} {{ min([4, 2]) }} {{ until(3) }}", "5 2 [0, 1, 2]"),
        ("{{ splitList('a b', ' ') }}", '["a", "b"]'),
        ("{{ default(missing, 'd') }} {{ default('', 'd', true) }} {{ missing | default('f') }}", "d d f"),
        (
            "{{ empty('') }} {{ empty(0) }} {{ empty('x') }} {{ coalesce(missing, '', 'c') }}",
            "true true false c",
        ),
        ("{{ uuidv4() | length }}", "36"),
        ("{{ regexMatch('abc', 'b.') }} {{ regexReplaceAll('a1b2', '[0-9]', '#') }}", "true a#b#"),
        (
            "{{ first([1, 2]) }}{{ last([1, 2]) }} {{ rest([1, 2, 3]) }} {{ uniq([1, 1, 2]) }}",
            "12 [2, 3] [1, 2]",
        ),
        ("{{ len('abc') }} {{ ext('a/b.conf') }} {{ clean('a/../b/') }}", "3 .conf b"),
    ],
)
def test_sprig_helpers(template: str, expected: str) -> None:
    assert r(template) == expected


def test_fail_stops_rendering_with_its_message() -> None:
    with pytest.raises(TemplateError, match="t.tmpl:1: port is required"):
        r("{{ fail('port is required') }}")


def test_b64dec_of_garbage_is_an_error() -> None:
    with pytest.raises(TemplateError, match="b64dec"):
        r("{{ b64dec('%%') }}")


# --- missing values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{% if missing %}x{% endif %}",
        "{% if missing is defined %}x{% endif %}",
        "{{ missing | default('') }}",
        "{{ orDef(missing, '') }}",
        "{% if m.missing is defined %}x{% endif %}",
        "{% if missing == 'a' %}x{% endif %}",
    ],
)
def test_absence_can_be_tested_without_error(template: str) -> None:
    assert r(template, m={}) == ""


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("{{ missing }}", "missing"),
        ("{% for x in missing %}{% endfor %}", "missing"),
        ("{{ missing.attr }}", "missing"),
        ("{{ m.nope }}", "m.nope"),
        ("{{ m['nope'] }}", "m.nope"),
        ("{{ missing + 1 }}", "missing"),
        ("{{ missing | length }}", "missing"),
        ("{{ toUpper(missing) }}", "missing"),
        ("{{ toJson(missing) }}", "missing"),
    ],
)
def test_using_a_missing_value_is_an_error_naming_it(template: str, name: str) -> None:
    with pytest.raises(TemplateError) as err:
        r("line one\n" + template, m={})
    assert err.value.path == "t.tmpl" and err.value.line == 2
    assert f"missing attribute '{name}'" in err.value.message


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(TemplateError, match="syntax error") as err:
        r("ok\n{% if %}")
    assert err.value.path == "t.tmpl" and err.value.line == 2


def test_whole_tree_is_reachable_as_attrs() -> None:
    assert render_string("{{ attrs['my-key'] }}", {"my-key": "v"}, name="t") == "v"


def test_uuidv4_is_a_random_version_4_uuid() -> None:
    import uuid

    from dgr.templater.functions.environment import uuidv4

    first, second = uuidv4(), uuidv4()
    assert first != second
    parsed = uuid.UUID(first)
    assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    assert str(parsed) == first
