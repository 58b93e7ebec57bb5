"""The dashboard in real headless Chromium against the four real services on seeded data:
signed in through `devmetrics login-link`, it loads without console errors, every chart has
data points, the range selector and the org switcher change what is drawn."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

FULL_RANGE = ("2026-10-01", "2026-11-30")  # covers the seed's two days
SECOND_DAY = ("2026-11-03", "2026-11-03")
CHARTS = (
    "deployments",
    "leadTime",
    "changeFailureRate",
    "timeToRestore",
    "cycleTime",
    "throughput",
    "reviewLoad",
    "aiRisk",
)
# Every chart's datasets as {chart: {label: [values]}}.
CHART_DATA_JS = """() => Object.fromEntries(Object.entries(window.dashboardCharts).map(
    ([name, chart]) => [name, Object.fromEntries(chart.data.datasets.map(
        (d) => [d.label, d.data]))]))"""


def sign_in(page, stack, login="alice", org="techcorp") -> None:
    made = stack.cli("login-link", "--user", login, "--org", org)
    assert made.returncode == 0, made.stderr
    page.goto(made.stdout.strip())
    assert page.url.startswith(f"{stack.url('metrics')}/dashboard/{org}")


def open_range(page, stack, org, start, end) -> None:
    page.goto(f"{stack.url('metrics')}/dashboard/{org}?from={start}&to={end}")
    wait_loaded(page)


def wait_loaded(page) -> None:
    page.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=15_000)
    assert page.locator("body").get_attribute("data-state") == "ready", page.locator(
        "#load-error"
    ).text_content()


def chart_data(page) -> dict:
    return page.evaluate(CHART_DATA_JS)


def points(datasets: dict, zero_counts: bool = False) -> list:
    """The values drawn: not null (no data), nor 0 unless 0 is a real measurement."""
    return [
        v for values in datasets.values() for v in values if v is not None and (v or zero_counts)
    ]


def table(page, table_id) -> dict[str, list[str]]:
    """Rows of a table by their first cell."""
    rows = page.locator(f"#{table_id} tbody tr").all()
    cells = [[c.text_content().strip() for c in row.locator("th, td").all()] for row in rows]
    return {row[0]: row[1:] for row in cells}


def screenshot(page, screenshot_dir, name) -> None:
    path = screenshot_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_dashboard_loads_every_chart_and_follows_the_range(page, stack, screenshot_dir):
    sign_in(page, stack)
    open_range(page, stack, "techcorp", *FULL_RANGE)

    assert page.problems == []
    data = chart_data(page)
    assert sorted(data) == sorted(CHARTS)
    for name in CHARTS:
        # A 0 % failure rate is a measurement; elsewhere 0 is "nothing happened".
        drawn = points(data[name], zero_counts=name == "changeFailureRate")
        assert drawn, f"chart {name} has no data points: {data[name]}"
    # The seed's TechCorp pull requests: 5 opened (3 on Nov 2, 2 on Nov 3), 2 merged on Nov 3.
    assert sum(data["throughput"]["Opened"]) == 5
    assert sum(data["throughput"]["Merged"]) == 2
    # Commits: alice 2 (Nov 2), bob 3 (2 on Nov 2, 1 on Nov 3), charlie 2 (Nov 3).
    developers = table(page, "developers-table")
    assert developers["Bob Brown (bob)"][0] == "3"
    assert developers["Alice Anderson (alice)"][0] == "2"
    assert developers["Charlie Chen (charlie)"][0] == "2"
    assert set(table(page, "repositories-table")) == {
        "techcorp/api-server",
        "techcorp/web-dashboard",
    }
    for key in ("deployment_frequency", "lead_time", "change_failure_rate", "time_to_restore"):
        tile = page.locator(f"#tile-{key}")
        assert tile.locator(".tile-value").text_content() not in ("", "…")
        assert tile.locator(".tile-trend").text_content()
    screenshot(page, screenshot_dir, "dashboard-techcorp-full-range")

    # The range selector: only the second day.
    page.fill("#range-from", SECOND_DAY[0])
    page.fill("#range-to", SECOND_DAY[1])
    page.click("#range-form button[type=submit]")
    wait_loaded(page)
    assert page.url.endswith(f"?from={SECOND_DAY[0]}&to={SECOND_DAY[1]}")
    narrowed = chart_data(page)
    assert narrowed != data
    assert sum(narrowed["throughput"]["Opened"]) == 2
    assert sum(narrowed["throughput"]["Merged"]) == 2
    developers = table(page, "developers-table")
    assert developers["Bob Brown (bob)"][0] == "1"
    assert developers["Charlie Chen (charlie)"][0] == "2"
    assert developers.get("Alice Anderson (alice)", ["0"])[0] == "0"
    assert page.problems == []
    screenshot(page, screenshot_dir, "dashboard-techcorp-second-day")


def test_org_switcher_lists_the_users_orgs_and_opens_another(page, stack, screenshot_dir):
    sign_in(page, stack)
    open_range(page, stack, "techcorp", *FULL_RANGE)
    options = page.locator("#org-switcher option").all_text_contents()
    # Alice's organizations: the one she owns first, her personal one last.
    assert options == ["TechCorp", "Startup Inc", "Alice Anderson (personal)"]

    page.select_option("#org-switcher", label="Startup Inc")
    page.wait_for_url(f"**/dashboard/startup-inc?from={FULL_RANGE[0]}&to={FULL_RANGE[1]}")
    wait_loaded(page)
    assert set(table(page, "repositories-table")) == {"startup-inc/mobile-app"}
    assert page.problems == []
    screenshot(page, screenshot_dir, "dashboard-startup-inc")
