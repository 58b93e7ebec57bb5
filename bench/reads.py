"""Item 4: read latency of the metrics API on the generated org history (bench/generate.py,
metrics computed by a full recompute first).

The metrics service and accounts (which answers its API-key introspection) run under
gunicorn with gunicorn.conf.py's defaults on loopback; an API key with `metrics:read` is
made for the generated org. Each endpoint gets a warm-up, then sequential requests over one
keep-alive connection; p50 and p95 of the wall time per request (status 200 checked).

Endpoints (services/metrics/views.py), the range ending on the history's last day:
- team metrics, 90 days by day:     GET /api/v1/orgs/<org>/metrics/team?granularity=day
- DORA, 365 days:                   GET /api/v1/orgs/<org>/metrics/dora
- developer table, 90 days by week: GET /api/v1/orgs/<org>/metrics/developers?granularity=week
  (first page of 100, as the dashboard asks)
- cycle-time breakdown, 90 days:    GET /api/v1/orgs/<org>/metrics/cycle-time

    python -m bench.reads [--quick]
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import lib
from bench.generate import generate, sizes
from bench.recompute import bound, history_ends_today, last_day, vacuum_analyze

WARMUP = 5
MAX_SECONDS_PER_ENDPOINT = 60.0  # bounded in time as well as in count


def endpoints(org: str) -> list[tuple[str, str, dict, float]]:
    """(figure, path, query, p95 bar in ms)."""
    end = last_day()
    days90 = {"from": (end - dt.timedelta(days=89)).isoformat(), "to": end.isoformat()}
    days365 = {"from": (end - dt.timedelta(days=364)).isoformat(), "to": end.isoformat()}
    base = f"/api/v1/orgs/{org}/metrics"
    return [
        ("team metrics, 90 days by day", f"{base}/team", {**days90, "granularity": "day"}, 50.0),
        ("DORA four keys, 365 days", f"{base}/dora", days365, 150.0),
        (
            "developer table, 90 days by week",
            f"{base}/developers",
            {**days90, "granularity": "week", "page_size": 100},
            50.0,
        ),
        ("cycle-time breakdown, 90 days", f"{base}/cycle-time", days90, 50.0),
    ]


def measure(session: requests.Session, url: str, query: dict, count: int) -> list[float]:
    for _ in range(WARMUP):
        session.get(url, params=query, timeout=60).raise_for_status()
    timings = []
    deadline = time.monotonic() + MAX_SECONDS_PER_ENDPOINT
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url, params=query, timeout=60)
        timings.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
        if time.monotonic() > deadline:
            break
    return timings


def create_key(database_url: str, org_slug: str) -> str:
    from services.accounts.logic import create_api_key
    from shared.models import Organization

    with bound(database_url):
        org = Organization.get(Organization.slug == org_slug)
        _key, plaintext = create_api_key(org, "bench reads", ["metrics:read"])
    return plaintext


def main() -> int:
    from services.metrics import engine
    from tests.helpers import free_port, service_env, start_service, stop, wait_ready

    results = lib.Results("reads")
    count = lib.size(300, 20)
    with lib.bench_database("reads") as url, tempfile.TemporaryDirectory() as logs:
        summary = generate(url, **sizes())
        org = summary["org_slug"]
        with bound(url), history_ends_today():
            engine.recompute_full(summary["organization_id"])
        # What autovacuum does after such a bulk change (the recompute wrote every pull
        # request's derived columns): fresh statistics and visibility map for the planner.
        vacuum_analyze(url)
        key = create_key(url, org)
        ports = {"accounts": free_port(), "metrics": free_port()}
        # One key drives every request: the per-key API limit would answer 429 past 600/min.
        env = service_env(url, ports, RATE_LIMIT_API="1000000 per minute")
        for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS"):  # gunicorn.conf.py's defaults
            env.pop(name, None)
        processes = {}
        try:
            for name, port in ports.items():
                processes[name] = start_service(name, port, env, Path(logs))
            for port in ports.values():
                wait_ready(f"http://127.0.0.1:{port}", timeout=60)
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
            base = f"http://127.0.0.1:{ports['metrics']}"
            for figure, path, query, bar_ms in endpoints(org):
                timings = measure(session, base + path, query, count)
                p50 = lib.percentile(timings, 50) * 1000
                p95 = lib.percentile(timings, 95) * 1000
                results.record(f"{figure}: p50", p50, "ms", note=f"{len(timings)} requests")
                results.record(
                    f"{figure}: p95",
                    p95,
                    "ms",
                    bar=f"<= {bar_ms:g} ms",
                    passed=p95 <= bar_ms,
                    note=f"{len(timings)} sequential requests, keep-alive, after {WARMUP} warm-up",
                )
            session.close()
        finally:
            for process in processes.values():
                stop(process)
    results.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
