"""`devmetrics studio`: the visual database browser (loopback, password, not in production)."""

from __future__ import annotations

import contextlib
import ipaddress
import os

import click

from devmetrics.cli.common import fail, with_database

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 5555


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("studio")
@click.option("--host", default=LOOPBACK, show_default=True, help="Address to bind.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--allow-production", is_flag=True, help="Start even when DEVMETRICS_ENV=production.")
@with_database
def studio_cmd(settings, host: str, port: int, allow_production: bool):
    """Browse, filter, edit and export every table in a browser (needs STUDIO_PASSWORD)."""
    password = os.environ.get("STUDIO_PASSWORD") or ""
    if not password:
        fail("STUDIO_PASSWORD must be set: Studio refuses to start without a password")
    if settings.is_production and not allow_production:
        fail("refusing to start Studio with DEVMETRICS_ENV=production (pass --allow-production)")
    from limits import parse_many
    from werkzeug.serving import make_server

    from devmetrics.studio import create_studio_app
    from devmetrics.studio.signin import DEFAULT_SIGN_IN_LIMIT

    sign_in_limit = os.environ.get("STUDIO_SIGN_IN_LIMIT") or DEFAULT_SIGN_IN_LIMIT
    try:
        parse_many(sign_in_limit)
    except ValueError:
        fail(f"STUDIO_SIGN_IN_LIMIT must be a rate such as '5 per minute', got {sign_in_limit!r}")
    app = create_studio_app(password, sign_in_limit=sign_in_limit)
    server = make_server(host, port, app, threaded=True)
    if not is_loopback(host):
        click.echo(f"warning: Studio is reachable beyond this machine on {host}", err=True)
    click.echo(f"Studio on http://{host}:{server.server_port} (Ctrl-C to stop)", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
