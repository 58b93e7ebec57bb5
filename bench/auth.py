"""Item 5: what authentication adds to a read, and that bcrypt is not paid per request.

    python -m bench.auth [--quick]

Two reads, each with an API key (`Authorization: Bearer dm_...`):

- activity: `GET /api/v1/orgs/<org>/repositories/<id>` (cheap and org-scoped), checked the
  production way: activity asks accounts (`/internal/v1/auth/introspect`, bcrypt) and caches
  a yes for INTROSPECTION_CACHE_SECONDS;
- accounts: `GET /api/v1/orgs/<org>`, which accounts resolves itself (no HTTP hop) through the
  same cache class for API keys (bcrypt once per key per TTL).

The unauthenticated counterpart is the *same handler* with the auth decorator taken off: each
app is started from a bench-only factory (`activity_with_unauthenticated_twin`,
`accounts_with_unauthenticated_twin`, never used in production) that mounts the very function
`@require` wraps under TWIN_PREFIX + the real route, setting `g.org` (the org lookup the
handler needs either way) and a fixed principal. Both routes live in the same gunicorn
processes (production settings) and the requests alternate, so the difference of the p50s is
what `@require` costs: reading the token, the introspection cache (or call), the membership
and scope checks. Both paths start with /api/, so the rate limiter runs on both (its budget is
raised for the bench: a single key would otherwise be refused after 600 requests a minute).

bcrypt once per key per TTL: for activity, accounts' own request counter (/metrics) gives how
many introspection calls the whole run made; for accounts' own reads, the bench factory counts
bcrypt checks (a Prometheus counter, summed over workers). The bar is at most one per gunicorn
worker per TTL window. The first request of a key (a cold cache: bcrypt) is timed as well.

BENCH_ACCOUNTS_UNCACHED=1 starts accounts with its former resolver (introspection and bcrypt
on every request) for a "before" figure.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from bench import ingest, lib, loadgen
from tests.helpers import free_port

TTL_SECONDS = 5  # INTROSPECTION_CACHE_SECONDS's default, set explicitly for the servers
TWIN_PREFIX = "/api/v1/bench-unauthenticated"
BCRYPT_CHECKS = "devmetrics_bench_bcrypt_checks"  # exposed as ..._total


def _mount_unauthenticated_twin(app, endpoint: str, rule: str, scopes: tuple) -> None:
    """Mount `endpoint`'s GET without `@require` at TWIN_PREFIX + `rule`."""
    from flask import g

    from shared.models import Organization
    from shared.permissions import Principal

    view_class = app.view_functions[endpoint].view_class
    unwrapped = view_class.get.__wrapped__  # the function @require wraps (smorest inside)

    def unauthenticated_read(org, **kwargs):
        g.org = Organization.by_ref(org)
        g.principal = Principal(kind="api_key", org_id=g.org.id, org_slug=g.org.slug, scopes=scopes)
        return unwrapped(view_class(), org=org, **kwargs)

    app.add_url_rule(TWIN_PREFIX + rule, f"bench_unauthenticated_{endpoint}", unauthenticated_read)


def activity_with_unauthenticated_twin():
    """gunicorn app factory (bench only): the activity app plus the repository read without
    `@require`, at TWIN_PREFIX + the real route."""
    from services.activity import create_app

    app = create_app()
    _mount_unauthenticated_twin(
        app,
        "repositories.RepositoryDetail",
        "/orgs/<org>/repositories/<int:repo_id>",
        ("activity:read",),
    )
    return app


def accounts_with_unauthenticated_twin():
    """gunicorn app factory (bench only): the accounts app plus the organization read without
    `@require`, and a count of bcrypt checks (BCRYPT_CHECKS, summed over workers)."""
    from prometheus_client import Counter

    from services.accounts import create_app
    from shared import crypto

    checks = Counter(BCRYPT_CHECKS, "bcrypt API-key checks (bench only)")
    check_api_key = crypto.check_api_key

    def counted_check(plaintext: str, key_hash: str) -> bool:
        checks.inc()
        return check_api_key(plaintext, key_hash)

    crypto.check_api_key = counted_check  # accounts.logic calls it through the module
    app = create_app()
    if os.environ.get("BENCH_ACCOUNTS_UNCACHED"):  # the "before" figure: bcrypt per request
        from services.accounts import logic

        app.extensions["devmetrics"]["resolve_token"] = logic.introspect
    _mount_unauthenticated_twin(app, "orgs.OrganizationDetail", "/orgs/<org>", ())
    return app


def create_key_and_repository(database_url: str) -> tuple[str, str, int]:
    """(org slug, API key plaintext, repository id) in the bench database."""
    from shared import crypto
    from shared.database import db, open_database
    from shared.models import ApiKey, Organization, Repository

    ingest.encryption_key()
    database = open_database(database_url, pool_min=0, pool_max=1)
    previous = db.obj
    db.initialize(database)
    try:
        with database.connection_context(), database.atomic():
            org = Organization.create(name="Bench auth", slug="bench-auth", plan="ENTERPRISE")
            repo = Repository.create(organization=org, github_id=4242, full_name="bench/auth")
            plaintext, prefix, key_hash = crypto.new_api_key()
            ApiKey.create(
                organization=org,
                name="bench",
                prefix=prefix,
                key_hash=key_hash,
                scopes=["activity:read"],
                organization_key=True,  # no creating person (as the CLI's)
            )
    finally:
        database.close_all()
        db.initialize(previous)
    return org.slug, plaintext, repo.id


def timed_get(conn: http.client.HTTPConnection, path: str, headers: dict) -> float:
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
    return elapsed


def _counter(port: int, pattern: str) -> int:
    """A Prometheus counter's value on the service at `port` (summed over its workers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return int(sum(float(v) for v in re.findall(pattern, text, re.M)))


def introspections(accounts_port: int) -> int:
    """Introspection calls accounts has answered (its Prometheus counter, all workers)."""
    return _counter(
        accounts_port,
        r"^devmetrics_http_requests_total\{[^}]*"
        r'endpoint="/internal/v1/auth/introspect"[^}]*\} ([0-9.e+]+)$',
    )


def bcrypt_checks(accounts_port: int) -> int:
    """bcrypt checks accounts made (the bench factory's counter, all workers)."""
    return _counter(accounts_port, rf"^{BCRYPT_CHECKS}_total(?:\{{[^}}]*\}})? ([0-9.e+]+)$")


def main() -> None:
    results = lib.Results("auth")
    settings = loadgen.gunicorn_settings()
    workers = int(settings["workers"])
    print(f"gunicorn (gunicorn.conf.py defaults): {settings}", flush=True)
    pairs = lib.size(3000, 200)
    log_dir = Path(tempfile.mkdtemp(prefix="devmetrics-bench-auth-"))
    try:
        with lib.bench_database("auth") as url:
            org, key, repo_id = create_key_and_repository(url)
            ports = {"accounts": free_port(), "activity": free_port()}
            apps = {
                "accounts": "bench.auth:accounts_with_unauthenticated_twin()",
                "activity": "bench.auth:activity_with_unauthenticated_twin()",
            }
            extra = {
                "ACCOUNTS_URL": f"http://127.0.0.1:{ports['accounts']}",
                "ACTIVITY_URL": f"http://127.0.0.1:{ports['activity']}",
                "INTROSPECTION_CACHE_SECONDS": str(TTL_SECONDS),
                "RATE_LIMIT_API": "1000000 per minute",
            }
            with ingest.servers(url, apps, log_dir, ports=ports, **extra):
                measure(
                    results,
                    ports["activity"],
                    f"/orgs/{org}/repositories/{repo_id}",
                    key,
                    pairs,
                    workers,
                    read="repository by id",
                    calls=(
                        "introspection calls (bcrypt)",
                        lambda: introspections(ports["accounts"]),
                    ),
                    suffix="",
                )
                measure(
                    results,
                    ports["accounts"],
                    f"/orgs/{org}",
                    key,
                    pairs,
                    workers,
                    read="organization, on accounts (resolves keys itself)",
                    calls=("bcrypt checks on accounts", lambda: bcrypt_checks(ports["accounts"])),
                    suffix=" (accounts)",
                )
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    results.write()


def measure(results, port, route, key, pairs, workers, *, read, calls, suffix) -> None:
    """`pairs` alternating reads of `route` with the key and of its unauthenticated twin on
    one keep-alive connection; `calls` = (what, counter) of the bcrypt-paying calls."""
    authenticated = f"/api/v1{route}"
    twin = f"{TWIN_PREFIX}{route}"
    bearer = {"Authorization": f"Bearer {key}"}
    calls_name, count_calls = calls
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        # Warm the worker this connection talks to (imports, pool) without touching the key.
        for _ in range(20):
            timed_get(conn, twin, {})
        before = count_calls()
        first = timed_get(conn, authenticated, bearer)  # cold cache: bcrypt
        with_auth, without = [], []
        started = time.monotonic()
        for i in range(pairs):
            if i % 2:  # alternate which goes first, so drift hits both
                with_auth.append(timed_get(conn, authenticated, bearer))
                without.append(timed_get(conn, twin, {}))
            else:
                without.append(timed_get(conn, twin, {}))
                with_auth.append(timed_get(conn, authenticated, bearer))
        seconds = time.monotonic() - started
        calls_made = count_calls() - before
    finally:
        conn.close()

    p50_auth, p50_plain = lib.percentile(with_auth, 50), lib.percentile(without, 50)
    added = p50_auth - p50_plain
    print(
        f"  {read}: {pairs} pairs in {seconds:.1f} s: p50 {p50_auth:.2f} ms with a key, "
        f"{p50_plain:.2f} ms without; first request of the key {first:.1f} ms; "
        f"{calls_made} {calls_name}"
    )
    results.record(
        f"p50 authenticated read (API key), {read}",
        p50_auth,
        "ms",
        limit=p50_plain,
        limit_name="same handler without @require",
    )
    results.record(
        f"added by authentication (p50 difference){suffix}",
        added,
        "ms",
        bar="<= 2 ms",
        passed=added <= 2,
        note=f"{pairs} alternating pairs on one keep-alive connection",
    )
    results.record(
        f"first request of a key (cold cache: bcrypt){suffix}",
        first,
        "ms",
        limit=p50_auth,
        limit_name="p50 once cached",
    )
    # One keep-alive connection talks to one worker, but allow every worker a call per window.
    allowed = workers * (int(seconds // TTL_SECONDS) + 2)
    results.record(
        f"{calls_name} for {pairs:,} authenticated reads",
        calls_made,
        "calls",
        bar=f"<= workers x TTL windows = {allowed}",
        passed=1 <= calls_made <= allowed,
        note=f"{seconds:.0f} s run, cache TTL {TTL_SECONDS} s",
    )


if __name__ == "__main__":
    main()
