"""Studio: the Flask-Admin browser over every table, through its real Flask app on the test
database (in-process), and the `devmetrics studio` command as a real process."""

from __future__ import annotations

import csv
import io
import re
import subprocess
from pathlib import Path

import pytest
import requests

from devmetrics.studio import create_studio_app
from devmetrics.studio.signin import local_path
from devmetrics.studio.views import endpoint_of
from shared.models import (
    MODELS,
    ApiKey,
    AuditLog,
    Organization,
    PullRequest,
    Repository,
    RepositoryStats,
    User,
)
from tests.conftest import DEVMETRICS, run_cli
from tests.helpers import free_port, stop, wait_until

PASSWORD = "correct horse"


def sign_in(client, password=PASSWORD):
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"password": password, "csrf": csrf})


@pytest.fixture
def studio(seeded):
    client = create_studio_app(PASSWORD).test_client()
    assert sign_in(client).status_code == 302
    return client


def form_csrf(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def export_rows(client, url: str) -> list[dict]:
    response = client.get(url)
    assert response.status_code == 200, response.text[:500]
    return list(csv.DictReader(io.StringIO(response.text)))


def test_requires_the_password(seeded):
    client = create_studio_app(PASSWORD).test_client()
    assert client.get("/organization/").status_code == 302
    assert "/login" in client.get("/organization/").location
    assert sign_in(client, "wrong").status_code == 401
    assert client.get("/organization/").status_code == 302
    assert sign_in(client).status_code == 302
    assert client.get("/organization/").status_code == 200


def test_refuses_an_empty_password():
    with pytest.raises(ValueError, match="STUDIO_PASSWORD"):
        create_studio_app("")


def test_every_table_is_listed_and_browsable(studio):
    menu = studio.get("/organization/").text
    for model in MODELS:
        assert f'href="/{endpoint_of(model)}/"' in menu, model.__name__
        assert studio.get(f"/{endpoint_of(model)}/").status_code == 200, model.__name__


def test_filter_by_organization_and_status(studio):
    startup = Organization.get(Organization.slug == "startup-inc")
    rows = export_rows(studio, f"/repository/export/csv/?flt0_organization_equals={startup.id}")
    assert [row["Full Name"] for row in rows] == ["startup-inc/mobile-app"]
    both = export_rows(
        studio, "/userorganization/?flt0_role_equals=OWNER".replace("/?", "/export/csv/?")
    )
    # Seed: alice owns techcorp and alice-personal, bob owns startup-inc.
    assert len(both) == 3
    assert {row["Role"] for row in both} == {"OWNER"}


def test_search_and_sort(studio):
    rows = export_rows(studio, "/repository/export/csv/?search=dashboard")
    assert [row["Full Name"] for row in rows] == ["techcorp/web-dashboard"]
    rows = export_rows(
        studio,
        "/user/export/csv/?sort=" + str(_column_index(studio, "/user/", "login")) + "&desc=1",
    )
    assert [row["Login"] for row in rows] == ["charlie", "bob", "alice"]


def _column_index(client, url, column):
    html = client.get(url).text
    match = re.search(rf'href="[^"]*sort=(\d+)[^"]*"[^>]*>\s*{column.capitalize()}', html)
    return int(match.group(1))


def test_relations_both_ways(studio):
    pull = PullRequest.select().order_by(PullRequest.id).first()
    details = studio.get(f"/pullrequest/details/?id={pull.id}").text
    assert f'href="/repository/details/?id={pull.repository_id}"' in details
    assert f'href="/user/details/?id={pull.author_id}"' in details
    techcorp = Organization.get(Organization.slug == "techcorp")
    details = studio.get(f"/organization/details/?id={techcorp.id}").text
    for child in ("userorganization", "repository", "apikey"):
        assert f'href="/{child}/?flt0_organization_equals={techcorp.id}"' in details
    members = export_rows(
        studio, f"/userorganization/export/csv/?flt0_organization_equals={techcorp.id}"
    )
    assert len(members) == 3  # alice, bob, charlie


def test_secrets_show_as_set_and_are_never_exported(studio):
    key = ApiKey.select().first()
    repository = Repository.get(Repository.full_name == "techcorp/api-server")
    listing = studio.get("/apikey/").text + studio.get(f"/apikey/details/?id={key.id}").text
    assert key.key_hash not in listing
    assert re.search(r">\s*set\s*<", listing)
    details = studio.get(f"/repository/details/?id={repository.id}").text
    assert repository.webhook_secret_encrypted not in details
    exported = studio.get("/apikey/export/csv/").text + studio.get("/repository/export/csv/").text
    assert key.key_hash not in exported
    assert repository.webhook_secret_encrypted not in exported
    assert "Key Hash" not in exported and "Webhook Secret" not in exported
    user = User.get(User.login == "alice")
    assert "oauth_token_encrypted" not in studio.get(f"/user/edit/?id={user.id}").text


def _edit_form(client, endpoint, row_id):
    html = client.get(f"/{endpoint}/edit/?id={row_id}").text
    fields = dict(re.findall(r'<input[^>]*?name="([a-z_]+)"[^>]*?value="([^"]*)"', html))
    for name, value in re.findall(
        r'<select[^>]*name="([a-z_]+)"[^>]*>.*?<option selected value="([^"]*)"', html, re.S
    ):
        fields[name] = value
    fields["csrf_token"] = form_csrf(html)
    return fields


def test_edit_validates_and_writes_one_audit_entry(studio):
    repository = Repository.get(Repository.full_name == "techcorp/api-server")
    entries = AuditLog.select().where(AuditLog.action == "studio.update")
    assert entries.count() == 0
    form = _edit_form(studio, "repository", repository.id)
    form["language"] = "Rust"
    response = studio.post(f"/repository/edit/?id={repository.id}", data=form)
    assert response.status_code == 302
    assert Repository.get_by_id(repository.id).language == "Rust"
    (entry,) = entries
    assert entry.target_type == "repositories" and entry.target_id == str(repository.id)
    assert entry.organization_id == repository.organization_id
    assert entry.metadata["fields"] == ["language"]

    form = _edit_form(studio, "repository", repository.id)
    form["sensitivity"] = "TOP-SECRET"  # not a Sensitivity member: the form refuses it
    response = studio.post(f"/repository/edit/?id={repository.id}", data=form)
    assert response.status_code == 200
    assert "Not a valid choice" in response.text
    assert Repository.get_by_id(repository.id).sensitivity == "CONFIDENTIAL"
    assert entries.count() == 1


def test_audit_log_is_read_only(studio):
    entry = AuditLog.select().first()
    assert studio.get(f"/auditlog/edit/?id={entry.id}").status_code in (302, 403)


def test_cli_refuses_without_password_and_in_production(database_factory):
    url = database_factory.new_url()
    assert run_cli("db", "migrate", database_url=url).returncode == 0
    no_password = run_cli("studio", database_url=url, env={"STUDIO_PASSWORD": ""})
    assert no_password.returncode == 1
    assert "STUDIO_PASSWORD must be set" in no_password.stderr
    production = run_cli(
        "studio",
        database_url=url,
        env={
            "STUDIO_PASSWORD": PASSWORD,
            "DEVMETRICS_ENV": "production",
            "INTERNAL_API_TOKEN": "x",
        },
    )
    assert production.returncode == 1
    assert "--allow-production" in production.stderr


def test_cli_refuses_a_malformed_sign_in_limit(database_factory):
    url = database_factory.new_url()
    assert run_cli("db", "migrate", database_url=url).returncode == 0
    refused = run_cli(
        "studio",
        database_url=url,
        env={"STUDIO_PASSWORD": PASSWORD, "STUDIO_SIGN_IN_LIMIT": "lots"},
    )
    assert refused.returncode == 1
    assert "STUDIO_SIGN_IN_LIMIT must be a rate" in refused.stderr


def start_studio(url: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    import os

    return subprocess.Popen(
        [str(DEVMETRICS), "studio", *args],
        env={**os.environ, "DATABASE_URL": url, "STUDIO_PASSWORD": PASSWORD, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # helpers.stop signals the process group
    )


def test_cli_binds_loopback_and_allows_production_when_told(database_factory):
    url = database_factory.new_url()
    assert run_cli("db", "migrate", database_url=url).returncode == 0
    port = free_port()
    process = start_studio(
        url,
        "--port",
        str(port),
        "--allow-production",
        env={"DEVMETRICS_ENV": "production", "INTERNAL_API_TOKEN": "x"},
    )
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/login"), what="studio")
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        stop(process)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port`, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_every_column_sorts_and_lists_paginate(studio):
    for model in MODELS:
        html = studio.get(f"/{endpoint_of(model)}/").text
        numbers = set(re.findall(r"[?&](?:amp;)?sort=(\d+)", html))
        assert len(numbers) >= 2, model.__name__  # every column but masked secrets sorts
        for number in sorted(numbers):
            for direction in ("", "&desc=1"):
                url = f"/{endpoint_of(model)}/?sort={number}{direction}"
                assert studio.get(url).status_code == 200, url
    # The seed's repository-stats rows run up to today (3 repositories a day, so the count
    # grows with the date): more than one page of 50, and the pages hold exactly them.
    total = RepositoryStats.select().count()
    assert total > 50
    pages = -(-total // 50) + 1  # every full page, the partial one, and one past the end
    sizes = [
        studio.get(f"/repositorystats/?page_size=50&page={page}").text.count('<td class="col-id">')
        for page in range(pages)
    ]
    assert sizes == [min(50, total - 50 * page) for page in range(pages - 1)] + [0]


@pytest.mark.parametrize(
    "target",
    ["/\t/evil.invalid/", "//evil", "/\\evil", "\\\\evil", "https://evil", "/\n/evil", "", None],
)
def test_studio_redirects_only_to_its_own_paths(target):
    assert local_path(target) == "/"


def test_studio_keeps_a_local_path():
    assert local_path("/repository/?flt0_organization_equals=1") == (
        "/repository/?flt0_organization_equals=1"
    )
