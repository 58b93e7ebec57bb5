"""/readyz says why a service is not ready: an unmigrated database, a pending migration."""

import pytest

from services import accounts, activity, metrics, notifications
from shared import migrations
from shared.database import db
from tests.helpers import SERVICE_NAMES

FACTORIES = dict(zip(SERVICE_NAMES, (accounts, activity, metrics, notifications), strict=True))


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_readyz_is_503_with_the_reason_until_migrated(service, fresh_database_url, restore_db):
    app = FACTORIES[service].create_app(
        {"TESTING": True, "DATABASE_URL": fresh_database_url, "READINESS_CACHE_SECONDS": 0}
    )
    client = app.test_client()
    assert client.get("/healthz").status_code == 200  # alive even so
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {
        "status": "not ready",
        "service": service,
        "reason": "database not migrated: run `devmetrics db migrate`",
    }

    *earlier, last = migrations.available()
    migrations.migrate(db.obj, earlier[-1])
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["reason"] == f"1 pending migration(s): {last}"

    migrations.migrate(db.obj)
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_database_is_unreachable(restore_db):
    app = accounts.create_app(
        {
            "TESTING": True,
            "READINESS_CACHE_SECONDS": 0,
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
        }
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["reason"].startswith("database unreachable")
    # An API call during the outage is a quick JSON 503, not a 500.
    api = app.test_client().get(
        "/api/v1/orgs/x", headers={"Authorization": "Bearer dm_0123456789ab_secret"}
    )
    assert api.status_code == 503 and api.json["message"] == "database unavailable, retry shortly"
