"""The `devmetrics` command."""

from __future__ import annotations

import click

from devmetrics.cli.apikey import apikey_group
from devmetrics.cli.backfill import backfill_cmd
from devmetrics.cli.db import db_group
from devmetrics.cli.events import events_group
from devmetrics.cli.keys import keys_group
from devmetrics.cli.login_link import login_link_cmd
from devmetrics.cli.metrics import metrics_group
from devmetrics.cli.retention import retention_group
from devmetrics.cli.studio import studio_cmd
from devmetrics.cli.worker import worker_cmd


@click.group()
def main():
    """DevMetrics: developer metrics from GitHub activity."""


main.add_command(db_group)
main.add_command(apikey_group)
main.add_command(worker_cmd)
main.add_command(keys_group)
main.add_command(events_group)
main.add_command(backfill_cmd)
main.add_command(metrics_group)
main.add_command(login_link_cmd)
main.add_command(retention_group)
main.add_command(studio_cmd)
