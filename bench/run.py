"""Run every benchmark, then print and write the combined table.

    python -m bench.run            # full sizes (make bench); exits 1 when a bar is missed
    python -m bench.run --quick    # small sizes (make bench-quick): checks the scripts run

Each benchmark runs in its own process (a crash or a leak in one does not skew the next) and
writes bench/results/<name>.json; this gathers them into bench/results/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench import lib

# Order matters only for reading: the HTTP paths first, then the big-database ones.
BENCHMARKS = ("ingest", "auth", "memory", "processing", "recompute", "reads", "growth")


def gather(names=BENCHMARKS) -> tuple[list[dict], dict]:
    rows, machine = [], {}
    for name in names:
        path = lib.RESULTS / f"{name}.json"
        if path.exists():
            document = json.loads(path.read_text())
            rows.extend(document["rows"])
            machine = document.get("machine") or machine
    return rows, machine


def summary(rows: list[dict], machine: dict) -> str:
    head = (
        f"Machine: {machine.get('cpus')} cores ({machine.get('cpu')}), "
        f"{machine.get('memory_gb')} GB, PostgreSQL {machine.get('postgresql')}, "
        f"Python {machine.get('python')}; {time.strftime('%Y-%m-%d', time.gmtime())}."
    )
    return head + "\n\n" + lib.markdown_table(rows)


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or list(BENCHMARKS)
    env = dict(os.environ)
    if lib.quick():
        env["BENCH_QUICK"] = "1"
    crashed = []
    for name in names:
        print(f"== bench.{name}{' (quick)' if lib.quick() else ''}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=lib.ROOT, env=env)
        print(f"== bench.{name}: exit {done.returncode} in {time.monotonic() - started:.0f} s")
        if done.returncode != 0:
            crashed.append(name)
    rows, machine = gather(names)
    table = summary(rows, machine)
    (lib.RESULTS / "RESULTS.md").write_text(table + "\n")
    print("\n" + table)
    missed = [f"{r['benchmark']}: {r['figure']}" for r in rows if r["passed"] is False]
    if crashed:
        print(f"\nbenchmarks that failed to run: {', '.join(crashed)}")
    if missed:
        print("\nbars missed:\n  " + "\n  ".join(missed))
    # A quick run proves the scripts still work; its small sizes say nothing about the bars.
    return 1 if crashed or (missed and not lib.quick()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
