"""Issue 17, item 11: Studio (`devmetrics studio`, a real process on its own database) under
attack: guessing its password (failed sign-ins are limited per client address, the right
password too once over the budget), sending the signed-in browser off-site through `next`,
CSV exports that run formulas, and secrets in notification targets, delivery errors and
other text, in lists, details, forms and exports."""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import pytest
import requests

from shared.models import Job, NotificationLog, NotificationRule, Organization, User
from tests.conftest import DEVMETRICS, run_cli
from tests.helpers import bound_to, free_port, stop, wait_until
from tests.reliability.report import record

PASSWORD = "studio-abuse-password"
BUDGET, WINDOW = 4, 6  # failed sign-ins per client address, per seconds
TOKENS = {name: secrets.token_hex(12) for name in ("slack", "query", "userinfo", "job")}
SLACK = (
    f"https://hooks.slack.com/services/T0{TOKENS['slack']}/B0{TOKENS['slack']}/{TOKENS['slack']}"
)
FORMULAS = ['=HYPERLINK("https://evil.invalid","x")', "+1+1", "-2+3", "@SUM(1,1)", "\tcmd"]


@pytest.fixture(scope="module")
def studio(database_factory, tmp_path_factory):
    url = database_factory.new_url()
    assert run_cli("db", "migrate", database_url=url).returncode == 0
    with bound_to(url):
        org = Organization.create(name="Studio Abuse", slug="studio-abuse")
        for position, formula in enumerate(FORMULAS):
            User.create(github_id=8_800_000 + position, login=f"formula{position}", name=formula)
        rules = {
            "slack": NotificationRule.create(
                organization=org, name="Slack", trigger="deployment.failed", channel="SLACK",
                target=SLACK,
            ),
            "query": NotificationRule.create(
                organization=org, name="Webhook", trigger="deployment.failed", channel="WEBHOOK",
                target=f"https://hooks.example.com/in?token={TOKENS['query']}",
            ),
            "userinfo": NotificationRule.create(
                organization=org, name="Userinfo", trigger="deployment.failed",
                channel="WEBHOOK", target=f"https://bot:{TOKENS['userinfo']}@hooks.example.com/x",
            ),
        }  # fmt: skip
        # Errors as stored before they were masked (and as a receiver may phrase them).
        logs = [
            NotificationLog.create(
                rule=rules["slack"],
                organization=org,
                event_key="stored-before",
                status="FAILED",
                last_error=f"connection failed: {SLACK} (Max retries exceeded with url: "
                f"{SLACK.split('.com', 1)[1]})",
            ),
            NotificationLog.create(
                rule=rules["query"],
                organization=org,
                event_key="echoed",
                status="DEAD",
                last_error=f"answered 500: upstream failed for /in?token={TOKENS['query']}",
            ),
        ]
        job = Job.create(
            queue="backfill",
            last_error=f"GET https://example.invalid/cb?access_token={TOKENS['job']} failed",
        )
        ids = {
            "rules": {name: rule.id for name, rule in rules.items()},
            "logs": [log.id for log in logs],
            "job": job.id,
        }
    port = free_port()
    log_file = open(tmp_path_factory.mktemp("studio-abuse") / "studio.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [str(DEVMETRICS), "studio", "--port", str(port)],
        env={
            **os.environ,
            "DATABASE_URL": url,
            "STUDIO_PASSWORD": PASSWORD,
            "STUDIO_SIGN_IN_LIMIT": f"{BUDGET} per {WINDOW} seconds",
        },
        stdout=log_file,
        stderr=log_file,
        start_new_session=True,  # helpers.stop signals the process group
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}/login", timeout=1).ok, what="studio")
        yield {"base": base, "url": url, **ids}
    finally:
        stop(process)
        log_file.close()


def attempt(
    base: str, password: str, query: str = ""
) -> tuple[requests.Session, requests.Response]:
    """One sign-in as a browser does it: the form (and its CSRF token), then the post."""
    browser = requests.Session()
    page = browser.get(f"{base}/login{query}", timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    answer = browser.post(
        f"{base}/login{query}",
        data={"password": password, "csrf": csrf},
        allow_redirects=False,
        timeout=10,
    )
    return browser, answer


def signed_in(base: str) -> requests.Session:
    browser, answer = attempt(base, PASSWORD)
    assert answer.status_code == 302, answer.text
    return browser


# Each lands on Studio's index: browsers drop tabs and newlines in URLs and read "\" as "/".
OFF_SITE = [
    "/%09/evil.invalid/",
    "/%0A/evil.invalid/",
    "/%0D/evil.invalid/",
    "//evil.invalid/",
    "///evil.invalid/",
    "/%5Cevil.invalid/",
    "/%5C/evil.invalid/",
    "%5C%5Cevil.invalid/",
    "%2F%2Fevil.invalid%2F",
    "%09//evil.invalid/",
    "https://evil.invalid/",
    "https:%2F%2Fevil.invalid/",
    "javascript:alert(1)",
    "%252F%252Fevil.invalid",
]


def test_the_sign_in_redirect_stays_on_studio(studio):
    base = studio["base"]
    for raw in OFF_SITE:
        _, answer = attempt(base, PASSWORD, f"?next={raw}")
        assert answer.status_code == 302, (raw, answer.text)
        assert urljoin(base + "/login", answer.headers["Location"]) == base + "/", raw
    # A path of Studio's own is kept.
    browser, answer = attempt(base, PASSWORD, "?next=/user/%3Fsearch%3Dformula")
    assert answer.headers["Location"] == "/user/?search=formula"
    assert browser.get(base + answer.headers["Location"], timeout=10).status_code == 200
    record(
        "17.11 Studio sign-in redirect",
        f"{len(OFF_SITE)} off-site next values (tab, newline, //, backslash, scheme, encoded) "
        "after a real sign-in: all land on Studio's index; a local path is kept",
        passed=True,
        bad_inputs=len(OFF_SITE),
    )


def test_exports_never_start_a_formula(studio):
    browser = signed_in(studio["base"])
    exported = browser.get(f"{studio['base']}/user/export/csv/?search=formula", timeout=10)
    assert exported.status_code == 200
    names = [row["Name"] for row in csv.DictReader(io.StringIO(exported.text))]
    assert sorted(names) == sorted("'" + formula for formula in FORMULAS)
    record(
        "17.11 Studio CSV formulas",
        f"{len(FORMULAS)} names starting = + - @ tab exported from Studio's users list: each "
        "cell starts with ' (the metrics API's rule)",
        passed=True,
        bad_inputs=len(FORMULAS),
    )


def _pages(browser, base: str, studio) -> dict[str, str]:
    paths = ["/notificationrule/", "/notificationrule/export/csv/", "/notificationlog/"]
    paths += ["/notificationlog/export/csv/", "/job/", "/job/export/csv/"]
    rows = [("notificationrule", i) for i in studio["rules"].values()]
    rows += [("notificationlog", i) for i in studio["logs"]] + [("job", studio["job"])]
    paths += [f"/{table}/{view}/?id={i}" for table, i in rows for view in ("details", "edit")]
    pages = {}
    for path in paths:
        answer = browser.get(base + path, timeout=10)
        assert answer.status_code == 200, (path, answer.text[:300])
        pages[path] = answer.text
    return pages


def test_secrets_are_masked_in_lists_details_forms_and_exports(studio):
    base = studio["base"]
    browser = signed_in(base)
    pages = _pages(browser, base, studio)
    for path, text in pages.items():
        for name, token in TOKENS.items():
            assert token not in text, f"the {name} secret in {path}"
    # What may be shown still is: the host, the rest of the error.
    assert "https://hooks.slack.com/…" in pages["/notificationrule/"]
    rules = list(csv.DictReader(io.StringIO(pages["/notificationrule/export/csv/"])))
    assert {row["Target"] for row in rules} == {
        "https://hooks.slack.com/…",
        "https://hooks.example.com/…",
    }
    logs = csv.DictReader(io.StringIO(pages["/notificationlog/export/csv/"]))
    errors = {row["Last Error"] for row in logs}
    assert errors == {
        "connection failed: https://hooks.slack.com/… (Max retries exceeded with url: /…)",
        "answered 500: upstream failed for /…",
    }
    assert "access_token=…" in pages["/job/"]

    # The target is write-only in its form: empty, the masked value as a placeholder; left
    # empty it stays, a new value replaces it.
    rule_id = studio["rules"]["slack"]
    edit = pages[f"/notificationrule/edit/?id={rule_id}"]
    target_input = re.search(r'<input[^>]*name="target"[^>]*>', edit).group(0)
    assert 'value=""' in target_input and 'placeholder="https://hooks.slack.com/…"' in target_input
    form = _form_of(edit)
    form["name"] = "Slack renamed"
    saved = browser.post(f"{base}/notificationrule/edit/?id={rule_id}", data=form, timeout=10)
    assert saved.status_code == 200 and "Record was successfully saved" in saved.text
    with bound_to(studio["url"]):
        rule = NotificationRule.get_by_id(rule_id)
        assert (rule.name, rule.target) == ("Slack renamed", SLACK)
    form = _form_of(browser.get(f"{base}/notificationrule/edit/?id={rule_id}", timeout=10).text)
    form["target"] = "https://hooks.slack.com/services/TNEW/BNEW/new"
    saved = browser.post(f"{base}/notificationrule/edit/?id={rule_id}", data=form, timeout=10)
    assert "Record was successfully saved" in saved.text
    assert "TNEW" not in saved.text
    with bound_to(studio["url"]):
        assert NotificationRule.get_by_id(rule_id).target.endswith("/TNEW/BNEW/new")
    record(
        "17.11 Studio secrets",
        f"Slack URL, query token, user:password targets, delivery errors and a job error "
        f"in {len(pages)} Studio lists, details, edit forms and CSV exports: masked; the "
        "target is write-only in its form",
        passed=True,
        bad_inputs=len(TOKENS),
    )


def _form_of(html: str) -> dict:
    fields = dict(re.findall(r'<input[^>]*?name="([a-z_]+)"[^>]*?value="([^"]*)"', html))
    for name, value in re.findall(
        r'<select[^>]*name="([a-z_]+)"[^>]*>.*?<option selected value="([^"]*)"', html, re.S
    ):
        fields[name] = value
    for name, value in re.findall(
        r'<textarea[^>]*name="([a-z_]+)"[^>]*>(.*?)</textarea>', html, re.S
    ):
        fields[name] = value.strip()
    fields["csrf_token"] = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', html
    ).group(1)
    return fields


def test_failed_sign_ins_are_throttled_per_address(studio):
    base = studio["base"]
    # Forms first, so that the guesses arrive together: the budget holds under concurrency.
    browsers = []
    for _ in range(3 * BUDGET):
        browser = requests.Session()
        page = browser.get(f"{base}/login", timeout=10)
        browsers.append((browser, re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)))

    def guess(pair):
        browser, csrf = pair
        return browser.post(
            f"{base}/login",
            data={"password": f"guess-{secrets.token_hex(4)}", "csrf": csrf},
            allow_redirects=False,
            timeout=10,
        )

    with ThreadPoolExecutor(len(browsers)) as pool:
        answers = list(pool.map(guess, browsers))
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [401] * BUDGET + [429] * (2 * BUDGET), codes
    for answer in answers:
        if answer.status_code == 429:
            assert 1 <= int(answer.headers["Retry-After"]) <= WINDOW
            assert "Too many failed sign-ins" in answer.text

    # The right password from the same address is refused too while over the budget...
    browser, refused = attempt(base, PASSWORD)
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= WINDOW
    still_out = browser.get(f"{base}/organization/", allow_redirects=False, timeout=10)
    assert still_out.status_code == 302 and "/login" in still_out.headers["Location"]
    # ...and accepted once the window has room again.
    time.sleep(wait)
    browser, accepted = attempt(base, PASSWORD)
    assert accepted.status_code == 302, accepted.text
    assert browser.get(f"{base}/organization/", timeout=10).status_code == 200
    record(
        "17.11 Studio sign-in throttle",
        f"{len(answers)} concurrent wrong passwords from one address against a budget of "
        f"{BUDGET} per {WINDOW} s: {BUDGET} checked, the rest 429 with Retry-After; the right "
        "password refused until the window passed, then accepted",
        passed=True,
        load=len(answers) + 2,
        bad_inputs=len(answers),
    )
