"""The rule condition language: `{"all"|"any": [condition, ...]}` or a comparison
`{"field": name, "op": one of = != > >= < <= in contains, "value": v}`; `{}` always holds."""

from __future__ import annotations

OPERATORS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a is not None and a > b,
    ">=": lambda a, b: a is not None and a >= b,
    "<": lambda a, b: a is not None and a < b,
    "<=": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "contains": lambda a, b: a is not None and b in a,
}


def matches(condition: dict, data: dict) -> bool:
    """Whether event `data` satisfies `condition` (a missing field never satisfies)."""
    if not condition:
        return True
    if "all" in condition:
        return all(matches(c, data) for c in condition["all"])
    if "any" in condition:
        return any(matches(c, data) for c in condition["any"])
    field, op = condition.get("field"), condition.get("op")
    if field not in data or op not in OPERATORS:
        return False
    try:
        return bool(OPERATORS[op](data[field], condition.get("value")))
    except TypeError:  # e.g. comparing a number with a string: not a match
        return False
