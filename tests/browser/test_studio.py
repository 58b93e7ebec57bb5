"""Studio in real headless Chromium against `devmetrics studio` on a seeded database: sign in,
open a table from the menu, filter it, follow a relation, edit a row, export the filtered list."""

from __future__ import annotations

import csv
import io
import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import DEVMETRICS, connect, run_cli
from tests.helpers import free_port, stop, wait_until

pytestmark = pytest.mark.browser

PASSWORD = "browser-studio-password"


@pytest.fixture(scope="module")
def studio_url(database_factory, tmp_path_factory):
    url = database_factory.new_url()
    assert run_cli("db", "migrate", database_url=url).returncode == 0
    assert run_cli("db", "seed", database_url=url).returncode == 0
    port = free_port()
    log = open(tmp_path_factory.mktemp("studio") / "studio.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [str(DEVMETRICS), "studio", "--port", str(port)],
        env={**os.environ, "DATABASE_URL": url, "STUDIO_PASSWORD": PASSWORD},
        stdout=log,
        stderr=log,
        start_new_session=True,  # helpers.stop signals the process group
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/login"), what="studio")
        yield base, url
    finally:
        stop(process)
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_browse_filter_follow_edit_export(page, studio_url, screenshot_dir):
    base, database_url = studio_url
    # Sign in: any page first sends us to the password form.
    page.goto(f"{base}/repository/")
    assert page.url.startswith(f"{base}/login")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/repository/")

    # Open a table from the menu.
    page.click("a[href='/userorganization/']")
    page.wait_for_url(f"{base}/userorganization/")
    assert page.locator("table.model-list tbody tr").count() == 7  # the seed's memberships

    # Filter through the filter UI: role equals OWNER.
    page.click("text=Add Filter")
    page.click("a.filter:has-text('Role')")
    page.select_option("select.filter-val", "OWNER", force=True)  # select2 hides the <select>
    page.click("button:has-text('Apply')")
    page.wait_for_url("**flt*role_equals=OWNER*")
    rows = page.locator("table.model-list tbody tr")
    assert rows.count() == 3  # alice owns techcorp and alice-personal, bob owns startup-inc
    page.screenshot(path=str(screenshot_dir / "studio-filtered.png"))
    print(f"screenshot: {screenshot_dir / 'studio-filtered.png'}")

    # Follow a relation forwards (membership -> organization), then back (-> its repositories).
    page.click("table.model-list a[data-relation=organization]:has-text('TechCorp')")
    page.wait_for_url("**/organization/details/**")
    assert page.locator("td:has-text('techcorp')").count() >= 1
    page.click("ul.studio-relations a:has-text('Repository (organization)')")
    page.wait_for_url("**/repository/?flt0_organization_equals=*")
    names = page.locator("table.model-list tbody td.col-full_name").all_text_contents()
    assert sorted(n.strip() for n in names) == ["techcorp/api-server", "techcorp/web-dashboard"]

    # Edit a row: the api-server's language.
    row = page.locator("table.model-list tbody tr", has_text="techcorp/api-server")
    row.locator("a[title='Edit Record']").click()
    page.wait_for_url("**/repository/edit/**")
    page.fill("input[name=language]", "Rust")
    page.click("input[type=submit][value='Save']")
    page.wait_for_url("**/repository/?**")
    assert "Record was successfully saved" in page.content()
    database = connect(database_url)
    try:
        language = database.execute_sql(
            "SELECT language FROM repositories WHERE full_name = 'techcorp/api-server'"
        ).fetchone()[0]
        audits = database.execute_sql(
            "SELECT target_type, metadata FROM audit_logs WHERE action = 'studio.update'"
        ).fetchall()
    finally:
        database.close()
    assert language == "Rust"
    assert len(audits) == 1 and audits[0][0] == "repositories"

    # Export the filtered list as CSV: only TechCorp's two repositories, no secrets.
    with page.expect_download() as download:
        page.click("a:has-text('Export')")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["Full Name"] for r in exported) == [
        "techcorp/api-server",
        "techcorp/web-dashboard",
    ]
    assert {r["Language"] for r in exported} == {"Rust", "TypeScript"}
    assert "Webhook Secret" not in text
    assert page.problems == []
