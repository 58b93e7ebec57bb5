"""The rule condition language: `{"all"|"any": [condition, ...]}` or a comparison
`{"field": name, "op": one of = != > >= < <= in contains, "value": v}`; `{}` always holds.

Conditions are checked when a rule is saved (`validate`), against the fields that events of
the rule's trigger carry (`TRIGGER_FIELDS`), so a typo is a 422 then, not a silent miss at
delivery time."""

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
ORDERING = {">", ">=", "<", "<="}
MAX_DEPTH = 5
MAX_COMPARISONS = 50
MAX_IN_VALUES = 500

# What the `data` of each trigger's events carries, with the type of each field. The
# producers: services/activity/processing.py (pull requests, deployments), the metrics
# service (incidents, AI reviews) and services/notifications/schedule.py (the rest).
_REPOSITORY = {"repository": str, "repository_id": int, "sensitivity": str}
_PULL_REQUEST = {
    **_REPOSITORY,
    "pull_request_id": int,
    "number": int,
    "title": str,
    "author": str,
    "url": str,
}
# A digest's figures (`metrics`, `dora`) are nested objects: a condition cannot name them.
_DIGEST = {
    "organization": str,
    "organization_name": str,
    "timezone": str,
    "period_start": str,
    "period_end": str,
    "days": int,
    "url": str,
}
TRIGGER_FIELDS: dict[str, dict[str, type]] = {
    "ai_review.completed": {
        **_REPOSITORY,
        "pull_request_id": int,
        "number": int,
        "title": str,
        "author": str,
        "risk_score": int,
        "risk_level": str,
        "provider": str,
    },
    "pull_request.opened": _PULL_REQUEST,
    "pull_request.merged": _PULL_REQUEST,
    "pull_request.review_requested": {**_PULL_REQUEST, "reviewer": str},
    # Open, ready and without a review for `age_hours` >= `hours` (the rule's parameter).
    "pull_request.stale": {**_PULL_REQUEST, "ready_at": str, "age_hours": float, "hours": int},
    "deployment.failed": {
        **_REPOSITORY,
        "deployment_id": int,
        "environment": str,
        "sha": str,
        "production": bool,
        "state": str,
    },
    "incident.opened": {
        **_REPOSITORY,
        "incident_id": int,
        "kind": str,
        "title": str,
        "opened_at": str,
    },
    # A daily figure that crossed the rule's bound: `developer` is set for scope developer.
    "metric.threshold": {
        "metric": str,
        "scope": str,
        "op": str,
        "team": str,
        "developer": str,
        "date": str,
        "value": float,
        "bound": float,
        "url": str,
    },
    "digest.daily": _DIGEST,
    "digest.weekly": _DIGEST,
}
TRIGGERS = tuple(TRIGGER_FIELDS)


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


def _type_name(kind: type) -> str:
    return {int: "a number", float: "a number", str: "a string", bool: "true or false"}[kind]


def _fits(value, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def validate(condition, trigger: str, path: str = "conditions") -> dict[str, list[str]]:
    """Every problem of `condition` for rules of `trigger`, as {path: [messages]} (empty when
    valid): unknown fields and operators are named, and values must suit the field."""
    errors: dict[str, list[str]] = {}
    comparisons = [0]
    _check(condition, TRIGGER_FIELDS[trigger], trigger, path, 1, errors, comparisons)
    if comparisons[0] > MAX_COMPARISONS:
        errors.setdefault(path, []).append(f"at most {MAX_COMPARISONS} comparisons")
    return errors


def _check(node, fields, trigger, path, depth, errors, comparisons) -> None:
    def problem(where: str, message: str) -> None:
        errors.setdefault(where, []).append(message)

    if not isinstance(node, dict):
        problem(path, "a condition is an object: {all: [...]}, {any: [...]} or {field, op, value}")
        return
    if not node and depth == 1:
        return  # {}: always holds
    if depth > MAX_DEPTH:
        problem(path, f"nested deeper than {MAX_DEPTH} levels")
        return
    groups = [key for key in ("all", "any") if key in node]
    if groups:
        group = groups[0]
        extra = sorted(set(node) - {group})
        if extra:
            problem(path, f"unexpected keys {extra} next to {group!r}")
        items = node[group]
        if not isinstance(items, list) or not items:
            problem(f"{path}.{group}", "a non-empty list of conditions")
            return
        for index, item in enumerate(items):
            _check(
                item, fields, trigger, f"{path}.{group}[{index}]", depth + 1, errors, comparisons
            )
        return
    comparisons[0] += 1
    extra = sorted(set(node) - {"field", "op", "value"})
    if extra:
        problem(path, f"unknown keys {extra}; a comparison has field, op and value")
    missing = [key for key in ("field", "op", "value") if key not in node]
    if missing:
        problem(path, f"missing {missing}")
        return
    field, op, value = node["field"], node["op"], node["value"]
    ok = True
    if not isinstance(field, str) or field not in fields:
        problem(
            f"{path}.field",
            f"unknown field {field!r} for {trigger}; known: {', '.join(sorted(fields))}",
        )
        ok = False
    if not isinstance(op, str) or op not in OPERATORS:
        problem(f"{path}.op", f"unknown operator {op!r}; known: {' '.join(OPERATORS)}")
        ok = False
    if ok:
        _check_value(fields[field], field, op, value, f"{path}.value", problem)


def _check_value(kind, field, op, value, where, problem) -> None:
    if op == "in":
        if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
            problem(where, f"'in' takes a list of 1 to {MAX_IN_VALUES} values")
        elif not all(_fits(item, kind) for item in value):
            problem(where, f"every value of {field} is {_type_name(kind)}")
    elif op == "contains":
        if kind is not str:
            problem(where, f"'contains' applies to text; {field} is {_type_name(kind)}")
        elif not isinstance(value, str) or not value:
            problem(where, "'contains' takes a non-empty string")
    elif op in ORDERING and kind is bool:
        problem(where, f"{op!r} does not apply to {field} (true or false)")
    elif not _fits(value, kind):
        problem(where, f"{field} is {_type_name(kind)}")
