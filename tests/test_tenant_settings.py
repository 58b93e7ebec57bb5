"""Reading an organization's or a repository's settings (shared/tenant_settings.py): each
key's default when unset, and the value when set, the same for every service."""

from shared import tenant_settings as ts
from shared.models import Organization, Repository


def test_defaults_when_nothing_is_set():
    org = Organization(name="a", slug="a", settings=None)
    repo = Repository(full_name="a/b", settings={})
    assert ts.production_environments(org) == ["prod", "production"]
    assert ts.is_production(org, "Production") and not ts.is_production(org, "staging")
    assert ts.deployment_source(repo) == ("deployments", None)
    assert ts.incident_label(org) == "incident"
    assert (ts.timezone_name(org), ts.digest_hour(org)) == ("UTC", 9)
    assert ts.settings_of(None) == {}


def test_set_values_are_read_as_given():
    org = Organization(
        name="a",
        slug="a",
        settings={
            "production_environments": ["Live"],
            "incident_label": "sev1",
            "timezone": "Europe/Paris",
            "digest_hour": 0,  # a real hour, not "unset"
        },
    )
    assert ts.production_environments(org) == ["live"]
    assert ts.is_production(org.settings, "LIVE") and not ts.is_production(org, "production")
    assert ts.incident_label(org) == "sev1"
    assert (ts.timezone_name(org), ts.digest_hour(org)) == ("Europe/Paris", 0)
    assert ts.deployment_source({"deployment_source": "workflow:deploy.yml"}) == (
        "workflow",
        "deploy.yml",
    )
    assert ts.deployment_source({"deployment_source": "merges"}) == ("merges", None)
