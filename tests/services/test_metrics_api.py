"""The metrics read API over real HTTP (gunicorn processes, one database): rollups, DORA,
cycle time, CSV export, 404/422 errors and auth. Figures come from rows written straight
into the stack's database for an organization of this module's own, so the seeded
organizations other tests count stay as they are."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time

import pytest
import requests

from services.metrics.csv import MAX_ROWS, columns_of
from services.metrics.schemas import TeamMetricSchema
from shared.models import (
    Commit,
    DeveloperMetric,
    Incident,
    IncidentKind,
    Organization,
    ProductionDeployment,
    PullRequest,
    Repository,
    RepositoryStats,
    Sensitivity,
    TeamMetric,
    User,
    UserOrganization,
)
from shared.sql import insert_rows
from tests.conftest import BACKEND
from tests.helpers import bound_to
from tests.services.test_auth import new_key

ORG = "metrics-api-test"


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour), tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def data(stack):
    """Hand-built engine outputs for 2026-03-02 (Monday) to 2026-03-18."""
    with bound_to(stack.database_url):
        org = Organization.create(name="Metrics API test", slug=ORG, plan="PRO")
        api = Repository.create(organization=org, full_name=f"{ORG}/api")
        vault = Repository.create(
            organization=org, full_name=f"{ORG}/vault", sensitivity=Sensitivity.RESTRICTED
        )
        erin = User.create(login="erin-metrics", name="Erin")
        frank = User.create(login="frank-metrics", name="Frank")
        UserOrganization.create(user=erin, organization=org, role="MEMBER")
        for day, commits, open_prs in [
            ("2026-03-04", 1, 4),
            ("2026-03-08", 2, 6),
            ("2026-03-09", 8, 7),
            ("2026-03-18", 16, 3),
        ]:
            TeamMetric.create(
                organization=org,
                date=dt.date.fromisoformat(day),
                commits=commits,
                open_prs=open_prs,
                cycle_time_median_s=1.0,  # never averaged into a rollup
            )
            RepositoryStats.create(
                repository=api,
                organization=org,
                date=dt.date.fromisoformat(day),
                commits=commits,
                open_prs=open_prs,
            )
        RepositoryStats.create(
            repository=vault, organization=org, date=dt.date(2026, 3, 5), commits=32
        )
        for user, day, commits in [(erin, "2026-03-04", 3), (erin, "2026-03-10", 5)]:
            DeveloperMetric.create(
                user=user, organization=org, date=dt.date.fromisoformat(day), commits=commits
            )
        DeveloperMetric.create(user=frank, organization=org, date=dt.date(2026, 3, 5), commits=7)
        DeveloperMetric.create(user=erin, organization=org, date=dt.date(2026, 3, 5), prs_merged=2)
        Commit.create(
            repository=api,
            organization=org,
            sha="m1",
            author=erin,
            author_login="erin-metrics",
            authored_at=at("2026-03-04"),
            committed_at=at("2026-03-04"),
        )
        # Merged and deployed in the first week: cycles 3600 and 10800 (median 7200).
        for number, (coding, cycle) in enumerate([(600, 3600), (1200, 10800)], start=1):
            PullRequest.create(
                repository=api,
                organization=org,
                number=number,
                author=erin,
                author_login="erin-metrics",
                base_ref="main",
                head_ref=f"b{number}",
                created_at=at("2026-03-03"),
                merged_at=at("2026-03-05"),
                deployed_at=at("2026-03-06"),
                coding_s=coding,
                cycle_s=cycle,
            )
        PullRequest.create(  # a bot's: left out
            repository=api,
            organization=org,
            number=3,
            author_login="renovate[bot]",
            author_is_bot=True,
            base_ref="main",
            head_ref="b3",
            created_at=at("2026-03-03"),
            merged_at=at("2026-03-05"),
            deployed_at=at("2026-03-06"),
            cycle_s=5,
        )
        for i, (day, succeeded, failed) in enumerate(
            [
                ("2026-03-02", True, False),  # previous period of 03-09..03-15
                ("2026-03-09", True, False),
                ("2026-03-10", True, False),
                ("2026-03-11", True, True),
                ("2026-03-12", False, True),
            ]
        ):
            ProductionDeployment.create(
                organization=org,
                repository=api,
                source="deployment",
                source_id=880_000 + i,
                created_at=at(day, 10),
                finished_at=at(day, 11),
                succeeded=succeeded,
                failed=failed,
            )
        Incident.create(
            organization=org,
            repository=api,
            kind=IncidentKind.FAILED_DEPLOYMENT,
            source_id=880_004,
            opened_at=at("2026-03-12", 11),
            resolved_at=at("2026-03-12", 13),
        )
        ids = {"org": org.id, "api": api.id, "vault": vault.id, "erin": erin.id}
    ids["reader"] = new_key(stack, ORG, "metrics:read")
    ids["admin"] = new_key(stack, ORG, "admin")
    ids["no_scope"] = new_key(stack, ORG, "activity:read")
    return ids


def get(stack, key, path, org=ORG, headers=None, **params):
    return requests.get(
        f"{stack.url('metrics')}/api/v1/orgs/{org}/metrics{path}",
        params=params,
        headers={**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})},
        timeout=10,
    )


def rows_of(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.text)))


RANGE = {"from": "2026-03-04", "to": "2026-03-18"}


def test_team_rollup_by_week(stack, data):
    response = get(stack, data["reader"], "/team", granularity="week", **RANGE)
    assert response.status_code == 200, response.text
    assert json.loads(response.headers["X-Pagination"])["total"] == 3
    weeks = response.json()
    assert [(w["period_start"], w["period_end"]) for w in weeks] == [
        ("2026-03-04", "2026-03-08"),
        ("2026-03-09", "2026-03-15"),
        ("2026-03-16", "2026-03-18"),
    ]
    assert [w["commits"] for w in weeks] == [3, 8, 16]
    assert [w["open_prs"] for w in weeks] == [6, 7, 3]
    assert weeks[0]["cycle_time_median_s"] == 7200.0  # from the two human PRs, not 1.0
    assert weeks[0]["cycle_time_p90_s"] == pytest.approx(10080.0)  # 3600 + 0.9 * 7200
    assert weeks[0]["coding_time_median_s"] == 900.0
    assert weeks[0]["lead_time_median_s"] == 7200.0
    assert weeks[0]["active_developers"] == 1  # erin's commit
    assert weeks[1]["change_failure_rate"] == 0.5  # 2 failed of 4
    assert weeks[1]["time_to_restore_median_s"] == 7200.0

    days = get(stack, data["reader"], "/team", granularity="day", **RANGE)
    assert len(days.json()) == 15  # every day of the range, zeros included
    only_api = get(
        stack, data["admin"], "/team", granularity="month", repository=data["api"], **RANGE
    )
    assert [m["commits"] for m in only_api.json()] == [27]


def test_developers_and_repositories(stack, data):
    # An ADMIN sees every repository: the sums of the stored daily rows.
    people = get(stack, data["admin"], "/developers", granularity="week", **RANGE).json()
    assert [(p["period_start"], p["user"]["login"], p["commits"]) for p in people] == [
        ("2026-03-04", "erin-metrics", 3),
        ("2026-03-04", "frank-metrics", 7),
        ("2026-03-09", "erin-metrics", 5),
    ]
    assert people[0]["cycle_time_median_s"] == 7200.0
    erin = get(stack, data["admin"], "/developers", user="ERIN-metrics", **RANGE).json()
    assert [(p["period_start"], p["user"]["id"], p["prs_merged"]) for p in erin] == [
        ("2026-03-04", data["erin"], 0),
        ("2026-03-05", data["erin"], 2),
        ("2026-03-10", data["erin"], 0),
    ]
    # Below ADMIN, with a RESTRICTED repository in the organization, the figures are
    # counted from the other repositories' activity: erin's commit and merged pull requests
    # in api (the hand-built daily rows have no activity behind them).
    visible = get(stack, data["reader"], "/developers", granularity="week", **RANGE).json()
    assert [
        (p["period_start"], p["user"]["login"], p["commits"], p["prs_merged"]) for p in visible
    ] == [("2026-03-04", "erin-metrics", 1, 2)]
    assert visible[0]["cycle_time_median_s"] == 7200.0

    repos = get(stack, data["reader"], "/repositories", granularity="month", **RANGE).json()
    assert [(r["repository"]["full_name"], r["commits"]) for r in repos] == [(f"{ORG}/api", 27)]
    as_admin = get(stack, data["admin"], "/repositories", granularity="month", **RANGE).json()
    assert {r["repository"]["full_name"] for r in as_admin} == {f"{ORG}/api", f"{ORG}/vault"}


def test_dora_and_cycle_time(stack, data):
    dora = get(stack, data["reader"], "/dora", **{"from": "2026-03-09", "to": "2026-03-15"})
    assert dora.status_code == 200, dora.text
    body = dora.json()
    assert body["period"] == {"from": "2026-03-09", "to": "2026-03-15", "days": 7}
    assert body["deployment_frequency"] == {
        "deployments": 3,
        "per_day": 3 / 7,
        "per_week": 3.0,
        "category": "high",
    }
    assert body["change_failure_rate"] == {
        "failed": 2,
        "deployments": 4,
        "rate": 0.5,
        "category": "low",
    }
    assert body["time_to_restore"] == {"median_s": 7200.0, "incidents": 1, "category": "high"}
    assert body["lead_time"] == {"median_s": None, "pull_requests": 0, "category": None}
    previous = body["previous"]
    assert previous["period"] == {"from": "2026-03-02", "to": "2026-03-08", "days": 7}
    assert previous["lead_time"] == {"median_s": 7200.0, "pull_requests": 2, "category": "elite"}
    assert previous["change_failure_rate"]["category"] == "elite"  # 0 of 1

    cycle = get(stack, data["reader"], "/cycle-time", **RANGE).json()
    assert cycle["pull_requests"] == 2
    assert cycle["stages"]["coding"] == {
        "median_s": 900.0,
        "p75_s": 1050.0,
        "p90_s": pytest.approx(1140.0),
        "count": 2,
    }
    assert cycle["stages"]["review"] == {
        "median_s": None,
        "p75_s": None,
        "p90_s": None,
        "count": 0,
    }


def test_csv_export(stack, data):
    by_param = get(stack, data["admin"], "/developers", format="csv", granularity="week", **RANGE)
    rows = rows_of(by_param)
    assert by_param.headers["Content-Disposition"] == (
        f'attachment; filename="{ORG}-developers-2026-03-04-2026-03-18.csv"'
    )
    assert [(r["period_start"], r["user.login"], r["commits"]) for r in rows] == [
        ("2026-03-04", "erin-metrics", "3"),
        ("2026-03-04", "frank-metrics", "7"),
        ("2026-03-09", "erin-metrics", "5"),
    ]
    assert rows[1]["cycle_time_median_s"] == ""  # null

    team = rows_of(
        get(stack, data["reader"], "/team", headers={"Accept": "text/csv"}, page_size=1, **RANGE)
    )
    assert len(team) == 15  # CSV has every row, whatever the page size
    assert team[0]["commits"] == "1" and "lead_time_median_s" in team[0]

    repos = rows_of(get(stack, data["reader"], "/repositories", format="csv", **RANGE))
    assert {r["repository.full_name"] for r in repos} == {f"{ORG}/api"}

    daily = rows_of(get(stack, data["reader"], "/daily", format="csv", **RANGE))
    assert [(r["date"], r["commits"]) for r in daily] == [
        ("2026-03-04", "1"),
        ("2026-03-08", "2"),
        ("2026-03-09", "8"),
        ("2026-03-18", "16"),
    ]
    dora = rows_of(get(stack, data["reader"], "/dora", format="csv", **RANGE))
    assert dora[0]["period.days"] == "15" and dora[0]["previous.period.from"] == "2026-02-17"
    assert (
        get(stack, data["reader"], "/team", **RANGE)
        .headers["Content-Type"]
        .startswith("application/json")
    )


def test_bad_input_is_a_named_422_or_404(stack, data):
    def error(response, status, field=None):
        assert response.status_code == status, response.text
        body = response.json()
        assert body["code"] == status
        if field:
            assert field in body["errors"]["query"], body
        return body

    key = data["reader"]
    error(get(stack, key, "/team", **{"from": "2026-03-10", "to": "2026-03-09"}), 422, "from")
    error(get(stack, key, "/dora", **{"from": "2020-01-01", "to": "2026-01-01"}), 422, "from")
    error(get(stack, key, "/cycle-time", **{"from": "0001-01-01"}), 422, "from")
    error(get(stack, key, "/team", to="2026-02-30"), 422, "to")
    error(get(stack, key, "/team", granularity="year"), 422, "granularity")
    error(get(stack, key, "/developers", format="xml"), 422, "format")
    error(get(stack, key, "/team", repository="abc"), 422, "repository")
    error(get(stack, key, "/team", repository=str(10**30)), 422, "repository")
    error(get(stack, key, "/team", repository=999_999_999), 404)
    error(get(stack, key, "/dora", repository=data["vault"]), 404)  # RESTRICTED: ADMIN+
    assert get(stack, data["admin"], "/dora", repository=data["vault"]).status_code == 200
    error(get(stack, key, "/developers", user="nobody-here"), 404)
    error(get(stack, key, "/developers", user="99999999999999999999999"), 404)
    techcorp_repo = get(
        stack,
        stack.keys["CI pipeline"],
        "/repositories",
        org="techcorp",
        **{"from": "2026-11-01", "to": "2026-11-30"},
    )
    other_org_repo = techcorp_repo.json()[0]["repository"]["id"]
    error(get(stack, key, "/cycle-time", repository=other_org_repo), 404)

    # Defaults: the 30 days up to today (UTC).
    today = dt.datetime.now(dt.UTC).date()
    period = get(stack, key, "/dora").json()["period"]
    assert period == {
        "from": (today - dt.timedelta(days=29)).isoformat(),
        "to": today.isoformat(),
        "days": 30,
    }


def test_auth(stack, data):
    assert get(stack, None, "/team").status_code == 401
    assert get(stack, "dm_not_a_real_key", "/dora").status_code == 401
    forbidden = get(stack, data["no_scope"], "/cycle-time")
    assert forbidden.status_code == 403 and "metrics:read" in forbidden.json()["message"]
    # Another organization's key: the organization does not exist for it.
    assert get(stack, stack.keys["CI pipeline"], "/team").status_code == 404
    assert get(stack, data["reader"], "/team", org="techcorp").status_code == 404


def test_seeded_rollup_agrees_with_the_daily_rows(stack):
    key = stack.keys["CI pipeline"]
    span = {"from": "2026-11-01", "to": "2026-11-08"}  # Sunday, then the ISO week of the seed
    daily = get(stack, key, "/daily", org="techcorp", **span).json()
    assert daily, "the seed has techcorp daily rows"
    weeks = get(stack, key, "/team", org="techcorp", granularity="week", **span).json()
    assert [(w["period_start"], w["period_end"]) for w in weeks] == [
        ("2026-11-01", "2026-11-01"),
        ("2026-11-02", "2026-11-08"),
    ]
    assert weeks[0]["commits"] == 0
    assert weeks[1]["commits"] == sum(d["commits"] for d in daily)
    assert weeks[1]["prs_opened"] == sum(d["prs_opened"] for d in daily)
    assert weeks[1]["active_developers"] == 3  # alice, bob and charlie committed


CAPPED = "metrics-export-cap"
CAP_FIRST_DAY = dt.date(1900, 1, 1)


@pytest.fixture(scope="module")
def capped(stack):
    """An organization with one daily row more than an export may hold (MAX_ROWS + 1 days
    from 1900 on); its key."""
    with bound_to(stack.database_url):
        org = Organization.create(name="Export cap", slug=CAPPED, plan="PRO")
        insert_rows(
            TeamMetric,
            [
                {
                    "organization": org.id,
                    "date": CAP_FIRST_DAY + dt.timedelta(days=n),
                    "commits": n % 7,
                    "cycle_time_median_s": n / 4,
                }
                for n in range(MAX_ROWS + 1)
            ],
        )
    return new_key(stack, CAPPED, "metrics:read")


def test_an_export_past_the_cap_is_a_422_naming_it_and_a_narrower_one_streams(stack, capped):
    over = get(stack, capped, "/daily", org=CAPPED, format="csv")
    assert over.status_code == 422, over.text
    body = over.json()
    assert str(MAX_ROWS) in body["message"] and str(MAX_ROWS + 1) in body["message"]
    assert "from" in body["errors"]["query"]
    # JSON pages are not exports: the same list is there, a page at a time.
    page = get(stack, capped, "/daily", org=CAPPED, page=2, page_size=3)
    assert json.loads(page.headers["X-Pagination"])["total"] == MAX_ROWS + 1
    assert [d["date"] for d in page.json()] == ["1900-01-04", "1900-01-05", "1900-01-06"]

    # Narrowed: streamed in chunks (no Content-Length), the same rows and values as JSON.
    narrowed = {"from": "1900-01-01", "to": "1902-09-27"}  # 1,000 days
    exported = get(stack, capped, "/daily", org=CAPPED, format="csv", **narrowed)
    assert "Content-Length" not in exported.headers
    assert exported.headers["Transfer-Encoding"] == "chunked"
    rows = rows_of(exported)
    assert len(rows) == 1000 and list(rows[0]) == columns_of(TeamMetricSchema())
    as_json = []
    for n in range(1, 11):
        pages = {"page": n, "page_size": 100, **narrowed}
        as_json += get(stack, capped, "/daily", org=CAPPED, **pages).json()
    assert [(r["date"], r["commits"], r["cycle_time_median_s"]) for r in rows] == [
        (d["date"], str(d["commits"]), repr(d["cycle_time_median_s"])) for d in as_json
    ]


def test_a_client_leaving_mid_export_frees_its_slot_and_connection(stack, capped):
    """The stream's end, or the client going away, gives the export slot (one per
    organization and process: this stack has one worker) and the database connection back:
    the organization's next export runs, and no connection is left busy."""
    url = f"{stack.url('metrics')}/api/v1/orgs/{CAPPED}/metrics/daily"
    headers = {"Authorization": f"Bearer {capped}"}

    def export(to: str, stream: bool):
        """The export, once the organization's slot is free (429 until then)."""
        params = {"format": "csv", "from": "1900-01-01", "to": to}
        deadline = time.monotonic() + 20
        while True:
            response = requests.get(url, params=params, headers=headers, stream=stream, timeout=30)
            if response.status_code != 429 or time.monotonic() > deadline:
                return response
            assert int(response.headers["Retry-After"]) > 0
            response.close()
            time.sleep(0.2)

    for _ in range(3):
        with export("2000-01-01", stream=True) as response:  # 36,525 rows
            assert response.status_code == 200, response.text
            assert next(response.iter_content(4096)).startswith(b"date,")
        # Gone after a few KB: the server finds out at its next write.
    assert len(rows_of(export("1900-01-10", stream=False))) == 10
    if BACKEND == "postgresql":  # no stream left a transaction (or a cursor in one) open
        with bound_to(stack.database_url) as database:
            held = database.execute_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state IN ('idle in transaction', 'idle in transaction (aborted)')"
            ).fetchone()[0]
        assert held == 0
