"""The seed's metrics, computed by the engine, against values worked out by hand from the
seed's tables (devmetrics/seed.py). Days: d0 = 2026-11-02, d1 = 2026-11-03 (UTC)."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.models import DeveloperMetric, Organization, PullRequest, TeamMetric, User

D0, D1 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)
H, M = 3600, 60


def team(slug, day):
    return TeamMetric.get(
        (TeamMetric.organization == Organization.get(Organization.slug == slug).id)
        & (TeamMetric.date == day)
    )


def developers(slug):
    org = Organization.get(Organization.slug == slug)
    return {
        (row.user.login, row.date): row
        for row in DeveloperMetric.select().join(User).where(DeveloperMetric.organization == org.id)
    }


def stages(full_name, number):
    pr = (
        PullRequest.select()
        .join_from(PullRequest, PullRequest.repository.rel_model)
        .where(
            (PullRequest.repository.rel_model.full_name == full_name)
            & (PullRequest.number == number)
        )
        .get()
    )
    return (pr.coding_s, pr.pickup_s, pr.review_s, pr.deploy_s, pr.cycle_s)


def test_seeded_pull_request_stages(seeded):
    # api-server#1: first commit d0 09:00, ready 12:00, bob's first review comment 14:40,
    # merged d1 09:00, first production deployment created after it finished d1 10:20.
    assert stages("techcorp/api-server", 1) == (
        3 * H,
        2 * H + 40 * M,
        18 * H + 20 * M,
        1 * H + 20 * M,
        25 * H + 20 * M,
    )
    # web-dashboard deploys by merging: deployed when merged (d1 14:00).
    assert stages("techcorp/web-dashboard", 1) == (
        1 * H,
        16 * H + 40 * M,
        4 * H + 20 * M,
        0,
        22 * H,
    )
    # mobile-app#1: deployed by the d1 12:00 deployment, finished 12:40.
    assert stages("startup-inc/mobile-app", 1) == (
        1 * H,
        3 * H + 40 * M,
        22 * H + 20 * M,
        1 * H + 40 * M,
        28 * H + 40 * M,
    )


def test_seeded_team_metrics(seeded):
    expected = {
        ("techcorp", D0): dict(
            commits=4,
            prs_opened=3,
            prs_merged=0,
            reviews=2,
            review_comments=4,
            issues_opened=2,
            active_developers=2,
            open_prs=3,
            deployments=0,
        ),
        ("techcorp", D1): dict(
            commits=3,
            prs_opened=2,
            prs_merged=2,
            additions=259,
            deletions=24,
            reviews=1,
            review_comments=2,
            issues_opened=1,
            issues_closed=1,
            active_developers=3,
            open_prs=2,
            deployments=4,
            failed_deployments=1,
            change_failure_rate=0.25,
            incidents_opened=1,
            incidents_resolved=1,
            time_to_restore_median_s=2 * H + 20 * M,
            cycle_time_median_s=85200,
            cycle_time_p90_s=90000,
            coding_time_median_s=2 * H,
            deploy_time_median_s=40 * M,
            lead_time_median_s=85200,
        ),
        ("startup-inc", D0): dict(
            commits=1,
            prs_opened=1,
            reviews=1,
            review_comments=2,
            active_developers=2,
            open_prs=1,
            deployments=1,
            failed_deployments=1,
            change_failure_rate=1.0,
        ),
        ("startup-inc", D1): dict(
            commits=1,
            prs_opened=1,
            prs_merged=1,
            additions=300,
            deletions=20,
            issues_opened=1,
            issues_closed=1,
            active_developers=1,
            open_prs=1,
            deployments=1,
            failed_deployments=0,
            incidents_opened=1,
            incidents_resolved=1,
            time_to_restore_median_s=9 * H,
            cycle_time_median_s=28 * H + 40 * M,
            lead_time_median_s=28 * H + 40 * M,
        ),
    }
    for (slug, day), values in expected.items():
        row = team(slug, day)
        for name, value in values.items():
            assert getattr(row, name) == pytest.approx(value), (slug, day, name)
    # Rows for every day from the first seeded day on; none for an org without activity.
    assert team("techcorp", D0 + dt.timedelta(days=5)).open_prs == 2
    personal = Organization.get(Organization.slug == "alice-personal")
    assert not TeamMetric.select().where(TeamMetric.organization == personal.id).exists()


def test_seeded_developer_metrics(seeded):
    counters = (
        "commits",
        "prs_opened",
        "prs_merged",
        "additions",
        "deletions",
        "reviews_given",
        "review_comments",
        "issues_opened",
        "issues_closed",
    )
    expected = {
        "techcorp": {
            ("alice", D0): dict(commits=2, prs_opened=1, reviews_given=1, review_comments=2),
            ("bob", D0): dict(
                commits=2, prs_opened=2, reviews_given=1, review_comments=2, issues_opened=1
            ),
            ("charlie", D0): dict(issues_opened=1),
            ("alice", D1): dict(
                prs_merged=1,
                additions=155,
                deletions=16,
                reviews_given=1,
                review_comments=2,
                issues_opened=1,
            ),
            ("bob", D1): dict(commits=1, prs_merged=1, additions=104, deletions=8, issues_closed=1),
            ("charlie", D1): dict(commits=2, prs_opened=2),
        },
        "startup-inc": {
            ("charlie", D0): dict(commits=1, prs_opened=1),
            ("bob", D0): dict(reviews_given=1, review_comments=2),
            ("charlie", D1): dict(prs_merged=1, additions=300, deletions=20, issues_opened=1),
            ("bob", D1): dict(commits=1, prs_opened=1, issues_closed=1),
        },
    }
    for slug, people in expected.items():
        rows = developers(slug)
        assert set(rows) == set(people), slug
        for key, values in people.items():
            for name in counters:
                assert getattr(rows[key], name) == values.get(name, 0), (slug, key, name)
    techcorp = developers("techcorp")
    assert techcorp[("alice", D1)].cycle_time_median_s == 25 * H + 20 * M
    assert techcorp[("bob", D1)].cycle_time_median_s == 22 * H
