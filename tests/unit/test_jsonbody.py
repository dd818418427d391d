"""json_bytes is json.dumps(obj).encode() with the same bytes for every value it accepts, the
same TypeError for what it refuses, and no state shared between calls or threads."""

from __future__ import annotations

import enum
import json
import math
import random
import threading
from decimal import Decimal
from typing import Any

import pytest

from tpd2py.jsonbody import json_bytes


class Colour(enum.IntEnum):
    RED = 1


class Ratio(float):
    pass


SAMPLES: list[Any] = [
    {"message": "Hello, World!"}, [], {}, "", 0, -1, 2**70, 1.5, -0.0, 1e300, 5e-324,
    math.nan, math.inf, -math.inf, True, False, None, "é\u2028\u2029\x00\x1f\"\\/<>&'",
    "\U0001f600 astral", {"nested": [{"a": [1, [2, [3, {"b": None}]]]}]},
    {1: "int key", None: "none key", True: "bool key", 2.5: "float key"}, (1, 2, (3,)),  # noqa: F601
    Colour.RED, {"e": Colour.RED}, Ratio(0.1), [Ratio(2.0)], "x" * 10_000,
]


@pytest.mark.parametrize("value", SAMPLES, ids=[repr(v)[:30] for v in SAMPLES])
def test_the_same_bytes_as_json_dumps(value: Any) -> None:
    assert json_bytes(value) == json.dumps(value).encode()


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.randint(-10**20, 10**20)
    if kind == 1:
        return rng.choice([rng.random() * 10 ** rng.randint(-30, 30), math.nan, -math.inf])
    if kind == 2:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x110000)]))
                       for _ in range(rng.randrange(12))).encode("utf-8", "surrogatepass") \
            .decode("utf-8", "surrogatepass")
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return ""
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    if kind == 6:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.randrange(3)))
    return {str(_random_value(rng, 4)): _random_value(rng, depth + 1)
            for _ in range(rng.randrange(5))}


def test_random_values_agree_with_json_dumps() -> None:
    rng = random.Random(20261207)
    for _ in range(3000):
        value = _random_value(rng)
        assert json_bytes(value) == json.dumps(value).encode(), value


@pytest.mark.parametrize("value", [{"a": object()}, [Decimal("1.5")], {(1, 2): "tuple key"},
                                   {b"bytes": 1}, b"bytes", {1, 2}])
def test_what_json_cannot_hold_is_the_same_type_error(value: Any) -> None:
    with pytest.raises(TypeError) as ours:
        json_bytes(value)
    with pytest.raises(TypeError) as stock:
        json.dumps(value)
    assert str(ours.value) == str(stock.value)


def test_a_failed_call_leaves_nothing_behind() -> None:
    shared = {"list": [1, 2, 3]}
    with pytest.raises(TypeError):
        json_bytes({"shared": shared, "bad": object()})
    assert json_bytes(shared) == b'{"list": [1, 2, 3]}'  # no stale circular-check memo


def test_a_structure_that_contains_itself_is_refused() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(RecursionError):
        json_bytes(loop)
    assert json_bytes([1, [2]]) == b"[1, [2]]"


def test_threads_encoding_one_object_at_once_agree() -> None:
    shared = {"rows": [{"id": i, "name": f"row {i}", "tags": ["a", "b"]} for i in range(200)]}
    expected = json.dumps(shared).encode()
    results: list[bool] = []

    def work() -> None:
        results.extend(json_bytes(shared) == expected for _ in range(200))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 800 and all(results)
