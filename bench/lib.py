"""What every benchmark shares: sizes, a throwaway PostgreSQL database, statistics, and the
result rows each benchmark writes as JSON and Markdown under bench/results/.

A result row is one figure measured side by side with its limit in the same run:
    record("ingest", "accepted events/s", 812.0, "events/s", limit=1040.0, bar=">= 0.7 x limit",
           passed=812 >= 0.7 * 1040)
The ratio is value / limit when both are given. `bench/report.py` gathers every file into the
table the README carries.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
WEBHOOKS = ROOT / "tests" / "fixtures" / "github" / "webhooks"  # real payloads (MIT)
SERVER_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def quick() -> bool:
    """Small sizes: a smoke check that the scripts still run (`make bench-quick`)."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0", "false") or "--quick" in sys.argv


# Quick runs never overwrite the full results the README quotes.
RESULTS = Path(
    os.environ.get("BENCH_RESULTS_DIR")
    or ROOT / "bench" / ("results-quick" if quick() else "results")
)


def size(full: int, small: int) -> int:
    return small if quick() else full


def repeats(full: int = 5, small: int = 1) -> int:
    """Runs per figure: the machine is shared and noisy, so figures are medians of several."""
    return small if quick() else full


# --- statistics -----------------------------------------------------------------------------


def median(values) -> float:
    return float(statistics.median(values))


def percentile(values, p: float) -> float:
    """Linear interpolation between closest ranks (as percentile_cont)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@contextmanager
def stopwatch():
    """with stopwatch() as elapsed: ...; then elapsed() is the block's wall time in seconds."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


# --- databases ------------------------------------------------------------------------------


def _admin():
    conn = psycopg2.connect(SERVER_URL, connect_timeout=5)
    conn.autocommit = True
    return conn


def new_database(label: str) -> str:
    """A fresh, migrated PostgreSQL database for one benchmark; drop it with drop_database."""
    name = f"devmetrics_bench_{label}_{uuid.uuid4().hex[:8]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = urlunparse(urlparse(SERVER_URL)._replace(path=f"/{name}"))
    migrated = subprocess.run(
        [str(Path(sys.executable).parent / "devmetrics"), "db", "migrate"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
    )
    if migrated.returncode != 0:
        raise RuntimeError(f"migrating {name} failed:\n{migrated.stderr}")
    return url


def drop_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@contextmanager
def bench_database(label: str):
    """A migrated database that lives for the block (kept with BENCH_KEEP_DATABASES=1)."""
    url = new_database(label)
    try:
        yield url
    finally:
        if os.environ.get("BENCH_KEEP_DATABASES") != "1":
            drop_database(url)


# --- results --------------------------------------------------------------------------------


@dataclass
class Row:
    benchmark: str
    figure: str
    value: float
    unit: str
    limit: float | None = None
    limit_name: str = ""
    ratio: float | None = None
    bar: str = ""
    passed: bool | None = None
    note: str = ""


@dataclass
class Results:
    benchmark: str
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def record(
        self, figure, value, unit, *, limit=None, limit_name="", bar="", passed=None, note=""
    ) -> Row:
        ratio = (value / limit) if (limit not in (None, 0) and value is not None) else None
        row = Row(self.benchmark, figure, value, unit, limit, limit_name, ratio, bar, passed, note)
        self.rows.append(row)
        print(
            f"  {figure}: {fmt(value)} {unit}"
            + (f" | limit {fmt(limit)} ({limit_name})" if limit is not None else "")
            + (f" | ratio {ratio:.2f}" if ratio is not None else "")
            + (f" | bar {bar}: {'PASS' if passed else 'MISS'}" if passed is not None else ""),
            flush=True,
        )
        return row

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        document = {
            "benchmark": self.benchmark,
            "quick": quick(),
            "machine": machine(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.time() - self.started, 1),
            "rows": [asdict(row) for row in self.rows],
        }
        path = RESULTS / f"{self.benchmark}.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
        (RESULTS / f"{self.benchmark}.md").write_text(markdown_table(self.rows) + "\n")
        return path


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown_table(rows) -> str:
    lines = [
        "| benchmark | figure | value | limit | ratio | bar | result |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        r = r if isinstance(r, dict) else asdict(r)
        limit = (
            f"{fmt(r['limit'])} {r['unit']} ({r['limit_name']})" if r["limit"] is not None else ""
        )
        result = "" if r["passed"] is None else ("pass" if r["passed"] else "**miss**")
        note = f" — {r['note']}" if r.get("note") else ""
        lines.append(
            f"| {r['benchmark']} | {r['figure']}{note} | {fmt(r['value'])} {r['unit']} | {limit} "
            f"| {fmt(r['ratio']) if r['ratio'] is not None else ''} | {r['bar']} | {result} |"
        )
    return "\n".join(lines)


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    pg = ""
    try:
        conn = _admin()
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            pg = cur.fetchone()[0]
        conn.close()
    except psycopg2.Error:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "postgresql": pg,
        "kernel": platform.release(),
    }


def clone_database(url: str, label: str) -> str:
    """A copy of the database at `url` (CREATE DATABASE ... TEMPLATE: a file copy, far faster
    than rebuilding it), so each repeat of a benchmark starts from the same data. Nothing may
    be connected to `url` meanwhile. Drop it with drop_database."""
    name = f"devmetrics_bench_{label}_{uuid.uuid4().hex[:8]}"
    source = urlparse(url).path.lstrip("/")
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    conn.close()
    return urlunparse(urlparse(SERVER_URL)._replace(path=f"/{name}"))
