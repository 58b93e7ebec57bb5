"""The reliability and security suite's report: one table of what was tried and what held.

Tests call `record(...)` once per row they prove; the rows go to a JSON-lines file when
DEVMETRICS_SUITE_REPORT names one (the report script sets it) and nowhere otherwise.

    .venv/bin/python -m tests.reliability.report      # runs the suite on PostgreSQL, prints it

Columns: the issue's item, what was checked, load held (requests/deliveries handled), faults
survived, bad inputs tried, rows lost (must be 0) and the verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT_ENV = "DEVMETRICS_SUITE_REPORT"


def record(
    item: str,
    check: str,
    *,
    passed: bool,
    load: int = 0,
    faults: int = 0,
    bad_inputs: int = 0,
    rows_lost: int = 0,
    detail: str = "",
) -> None:
    """One row of the table. Call it after the test's assertions held (passed=True), or with
    passed=False just before failing, so the table shows what broke."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    row = {
        "item": item,
        "check": check,
        "passed": bool(passed),
        "load": load,
        "faults": faults,
        "bad_inputs": bad_inputs,
        "rows_lost": rows_lost,
        "detail": detail,
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")


def read(path: str | Path) -> list[dict]:
    found = bool(path) and Path(path).is_file()
    lines = Path(path).read_text(encoding="utf-8").splitlines() if found else []
    return [json.loads(line) for line in lines if line.strip()]


def table(rows: list[dict]) -> str:
    def item_key(row):
        # Items are numbered `12` or, for an issue's list, `17.4`: sort numerically.
        head = row["item"].split()[0]
        parts = head.split(".")
        number = tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (999,)
        return (number, row["item"], row["check"])

    lines = [
        "| item | check | load held | faults survived | bad inputs tried | rows lost | result |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in sorted(rows, key=item_key):
        lines.append(
            f"| {r['item']} | {r['check']}{' — ' + r['detail'] if r['detail'] else ''} "
            f"| {r['load'] or ''} | {r['faults'] or ''} | {r['bad_inputs'] or ''} "
            f"| {r['rows_lost']} | {'pass' if r['passed'] and not r['rows_lost'] else 'FAIL'} |"
        )
    total = {k: sum(r[k] for r in rows) for k in ("load", "faults", "bad_inputs", "rows_lost")}
    held = bool(rows) and all(r["passed"] for r in rows) and not total["rows_lost"]
    lines.append(
        f"| all | {len(rows)} checks | {total['load']} | {total['faults']} "
        f"| {total['bad_inputs']} | {total['rows_lost']} "
        f"| {'pass' if held else 'FAIL'} |"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run tests/reliability and tests/security (PostgreSQL unless TEST_DATABASE_URL says
    otherwise) and print the table; exit non-zero when a test failed or a row did."""
    with tempfile.NamedTemporaryFile(prefix="devmetrics-suite-", suffix=".jsonl") as report:
        env = {**os.environ, REPORT_ENV: report.name}
        env.setdefault("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        tests = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/reliability",
                "tests/security",
                *argv,
            ],
            cwd=ROOT,
            env=env,
        )
        rows = read(report.name)
    print()
    print(table(rows))
    failed = tests.returncode != 0 or not rows or not all(r["passed"] for r in rows)
    return 1 if failed or any(r["rows_lost"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
