"""A daily digest as people read it: the e-mail and Slack text of the seeded day's figures."""

from services.notifications import channels, schedule
from shared.models import NotificationLog, NotificationRule
from tests.test_notification_schedule import make_rule, utc


def test_the_daily_digest_reads_as_figures_not_json(seeded):
    rule = make_rule("techcorp", "digest.daily", channel="EMAIL", target="lead@techcorp.example")
    assert schedule.run_scheduled(utc(4, 9)) == 1
    log = NotificationLog.get(NotificationLog.rule == rule)
    message = channels.render(NotificationRule.get_by_id(rule.id), log.payload)
    text = message.get_body(("plain",)).get_content()
    # techcorp on 2026-11-03 (tests/test_seed_metrics.py): 3 commits, 2 PRs opened and merged,
    # 1 review, 4 deployments of which 1 failed, median cycle 85200 s; DORA over that day:
    # lead time 85200 s (< 1 day: elite), 3 successes on 1 day (21/week; 1 day in the
    # clipped week: high), 1 of 4 failed (25 %: low), restored in 8400 s (< 1 day: high).
    for line in [
        "period: 2026-11-03 to 2026-11-03",
        "commits: 3",
        "pull requests: 2 opened, 2 merged",
        "reviews: 1",
        "deployments: 4 (1 failed)",
        "cycle time (median): 23h 40m",
        "lead time: 23h 40m (elite)",
        "deployment frequency: 21.0 / week (high)",
        "change failure rate: 25 % (low)",
        "time to restore: 2h 20m (high)",
    ]:
        assert line in text.splitlines(), (line, text)
    assert "{" not in text  # no nested JSON
    html = message.get_body(("html",)).get_content()
    assert "<th align='left'>lead time</th><td>23h 40m (elite)</td>" in html


def test_durations_for_people():
    assert [channels.duration(s) for s in (None, 42, 600, 8400, 85200, 200000)] == [
        "n/a",
        "42s",
        "10m",
        "2h 20m",
        "23h 40m",
        "2d 7h",
    ]
