"""shared.fastjson.loads returns exactly what json.loads returns (the same values, types and
errors), whichever parser produced it."""

from __future__ import annotations

import json
import math
import random
import struct

import pytest

from shared import fastjson
from tests.helpers import WEBHOOK_SAMPLES

SAMPLES = WEBHOOK_SAMPLES


def same(a, b) -> bool:
    """Equal values of equal types all the way down (1 == 1.0 is not enough; NaN is NaN);
    iterative, for documents nested deeper than the recursion limit allows."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            if list(x) != list(y):
                return False
            pending.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif isinstance(x, float):
            if struct.pack("d", x) != struct.pack("d", y) and not (math.isnan(x) and math.isnan(y)):
                return False
        elif x != y:
            return False
    return True


def outcome(loads, text):
    try:
        return "value", loads(text)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


def agrees(text) -> bool:
    ours, theirs = outcome(fastjson.loads, text), outcome(json.loads, text)
    return ours[0] == theirs[0] and same(ours[1], theirs[1])


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a": ' * depth + leaf + "}" * depth


def test_every_github_sample_decodes_alike_as_text_and_bytes():
    paths = sorted(SAMPLES.glob("*/*.json"))
    assert len(paths) > 100
    for path in paths:
        raw = path.read_bytes()
        assert agrees(raw), path
        assert agrees(raw.decode()), path


@pytest.mark.parametrize(
    "text",
    [
        # orjson makes floats of these; json.loads keeps them exact.
        '{"id": 18446744073709551616}',
        '{"id": -9223372036854775809}',
        '[1, 2, {"n": 123456789012345678901234567890}]',
        # Floats proper, and the integers orjson keeps.
        '{"x": 0.1, "y": -0.0, "z": 1e-400, "w": 2.2250738585072011e-308}',
        '{"id": 9223372036854775807, "u": 18446744073709551615}',
        # orjson refuses these; json.loads accepts them.
        '{"x": NaN, "y": Infinity, "z": -Infinity}',
        '{"x": 1e400}',
        '{"s": "\\ud800"}',
        # Both refuse.
        "[1,]",
        '{"a": 1}x',
        "\ufeff{}",
        "",
        # Duplicate keys: the last one wins in both.
        '{"a": 1, "a": 2}',
        '"\\u0000"',
    ],
)
def test_edge_cases_decode_alike(text):
    assert agrees(text)
    assert agrees(text.encode("utf-8", "surrogatepass"))


def test_a_big_integer_stays_an_integer():
    assert fastjson.loads('{"id": 18446744073709551616}') == {"id": 18446744073709551616}
    assert type(fastjson.loads('{"id": 18446744073709551616}')["id"]) is int


@pytest.mark.parametrize("depth", [fastjson.DEEP - 1, fastjson.DEEP, 900, 1_010, 1_030, 5_000])
def test_deep_nesting_is_decided_as_json_loads_decides(depth):
    # Near the interpreter's recursion limit json.loads fails where orjson (to 1,024) would not.
    assert agrees(nested(depth))


def test_wide_shallow_documents_keep_the_fast_result():
    # Thousands of brackets but two levels deep: orjson's value, equal to json.loads's.
    text = json.dumps({"commits": [{"added": [], "removed": []} for _ in range(2_000)]})
    assert fastjson._brackets(text) >= fastjson.DEEP
    assert fastjson._depth(fastjson.loads(text)) == 4
    assert agrees(text)


def test_random_numbers_decode_alike():
    rng = random.Random(7)
    for _ in range(20_000):
        bits = rng.getrandbits(64)
        number = struct.unpack("d", struct.pack("Q", bits))[0]
        if math.isfinite(number):
            assert agrees(f'{{"f": {number!r}, "i": {bits}, "n": -{bits}}}')


def test_the_hooks_see_what_they_see_in_json_loads():
    """`parse_constant` and `parse_float` (the intake refuses NaN, Infinity and numbers past
    a double with them) are called for the same literals, in the same order, as by
    json.loads, whichever parser decodes the rest."""
    texts = [
        '{"a": NaN}',
        '{"a": [1, -Infinity, 2.5], "b": Infinity}',
        '{"size": 1e400}',
        '{"n": 12345678901234567890123, "x": 0.1}',
        nested(fastjson.DEEP + 10),
        nested(20, "-Infinity"),
        *(path.read_text() for path in sorted(SAMPLES.glob("*/*.json"))[:40]),
    ]
    for text in texts:
        ours, theirs = Recorder(), Recorder()
        assert same(fastjson.loads(text, **ours.hooks()), json.loads(text, **theirs.hooks()))
        assert ours.calls == theirs.calls, text[:80]


class Recorder:
    def __init__(self):
        self.calls = []

    def hooks(self) -> dict:
        return {"parse_constant": self.constant, "parse_float": self.float}

    def constant(self, name):
        self.calls.append(("constant", name))
        return 0

    def float(self, literal):
        self.calls.append(("float", literal))
        return 0.0
