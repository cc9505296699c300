"""The sandboxes' one JSON encoder: `json.dumps` spelling, exact `Decimal` numbers."""

from __future__ import annotations

import json
from decimal import Decimal, localcontext
from typing import Any

import pytest

from sync_daemon.sandbox.http import json_bytes, json_response


@pytest.mark.parametrize(
    ("number", "wire"),
    [
        ("23.76", "23.76"), ("20.00", "20.0"), ("20", "20.0"), ("0.010", "0.01"), ("0.0", "0.0"),
        ("26.40", "26.4"), ("-0.00", "-0.0"), ("1E+3", "1000.0"), ("0.00001", "0.00001"),
        ("12345678901234567890.123456789", "12345678901234567890.123456789"),
    ],
)  # fmt: skip
def test_a_decimal_is_an_exact_json_number(number: str, wire: str) -> None:
    assert json_bytes({"Amount": Decimal(number)}) == f'{{"Amount": {wire}}}'.encode()
    assert json.loads(wire, parse_float=Decimal) == Decimal(number)


def test_digits_do_not_depend_on_the_decimal_context() -> None:
    with localcontext() as context:
        context.prec = 3
        assert json_bytes([Decimal("1234.5678")]) == b"[1234.5678]"


@pytest.mark.parametrize(
    "payload",
    [
        {"a": [1, 2.5, True, None, "x"], "b": {}, "c": [], "d": (1, 2)},
        {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
        ['Zürich \u2028 "quoted" \\ tab\t'],
        "top-level string",
    ],
)
def test_everything_but_decimals_is_spelled_as_json_dumps_spells_it(payload: Any) -> None:
    assert json_bytes(payload) == json.dumps(payload).encode()
    unescaped = json.dumps(payload, ensure_ascii=False).encode()
    assert json_bytes(payload, ensure_ascii=False) == unescaped


@pytest.mark.parametrize("payload", [{"a": {1, 2}}, {Decimal(1): "key"}, [object()]])
def test_what_json_cannot_hold_is_a_type_error(payload: Any) -> None:
    with pytest.raises(TypeError):
        json_bytes(payload)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_a_decimal_without_a_json_number_is_refused(number: str) -> None:
    with pytest.raises(ValueError, match="JSON number"):
        json_bytes([Decimal(number)])


def test_json_response_carries_headers_and_the_json_type() -> None:
    response = json_response({"Value": Decimal("19.80")}, 429, {"Retry-After": "7"})
    assert (response.status, response.body) == (429, b'{"Value": 19.8}')
    assert response.content_type == "application/json; charset=utf-8"
    assert response.headers == {"Retry-After": "7"}
