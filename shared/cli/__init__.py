"""The `devmetrics` command."""

from __future__ import annotations

import click

from shared.cli.db import db_group


@click.group()
def main():
    """DevMetrics: developer metrics from GitHub activity."""


main.add_command(db_group)
