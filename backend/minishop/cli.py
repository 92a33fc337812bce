"""Operator commands: `flask --app minishop <command>`."""

from __future__ import annotations

import click
from flask import Flask

from minishop.domain import seeding


@click.command("seed")
def seed_command() -> None:
    """Insert the demo categories and products; running it again changes nothing."""
    created = seeding.seed_demo_catalog()
    click.echo(f"seed: {created} rows created")


def init_app(app: Flask) -> None:
    app.cli.add_command(seed_command)
