"""Operator commands: `flask --app minishop <command>`."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask

from minishop import extensions
from minishop.domain import auth, completion, orders, reconciliation, seeding
from minishop.models.types import utcnow


@click.command("seed")
def seed_command() -> None:
    """Insert the demo categories and products; running it again changes nothing."""
    created = seeding.seed_demo_catalog(extensions.session())
    click.echo(f"seed: {created} rows created")


@click.command("grant-admin")
@click.argument("openid")
def grant_admin_command(openid: str) -> None:
    """Give the WeChat user OPENID the admin role (creating the user if they never logged in)."""
    user = auth.grant_admin(extensions.session(), openid)
    click.echo(f"grant-admin: user {user.id} is now {user.role}")


@click.group("orders")
def orders_group() -> None:
    """Order operations."""


@orders_group.command("expire")
def expire_orders_command() -> None:
    """Cancel unpaid orders past their expiry and return their stock (a CronJob runs this).

    With WeChat Pay configured, each order's transaction is closed at WeChat first; one that
    turns out paid is marked paid instead of cancelled.
    """
    context = extensions.payments.get()
    if context is None:
        expired = orders.expire_orders(extensions.session(), extensions.catalog_cache.get())
    else:
        expired = reconciliation.expire_unpaid_orders(extensions.session(), context)
    click.echo(f"orders expire: {expired} orders expired")


@orders_group.command("complete-shipped")
@click.option(
    "--after-days",
    type=click.IntRange(min=1),
    required=True,
    help="complete orders shipped more than this many days ago",
)
def complete_shipped_command(after_days: int) -> None:
    """Complete shipped orders whose buyer has not confirmed receipt within AFTER_DAYS days (run
    it from cron, e.g. daily)."""
    completed = completion.complete_shipped_orders(
        extensions.session(), shipped_before=utcnow() - timedelta(days=after_days)
    )
    click.echo(f"orders complete-shipped: {completed} orders completed")


@click.group("payments")
def payments_group() -> None:
    """WeChat Pay operations."""


@payments_group.command("reconcile")
@click.option(
    "--older-than-minutes",
    type=click.IntRange(min=1),
    default=None,
    help="only transactions at least this old (default: PAYMENT_RECONCILE_AFTER_MINUTES)",
)
def reconcile_command(older_than_minutes: int | None) -> None:
    """Ask WeChat Pay about payments and refunds whose notification never came, and apply the
    answers as the notification would have (a CronJob runs this)."""
    context = extensions.payments.get()
    if context is None:  # the operator reads why, not AppError's traceback
        raise click.ClickException(
            "WeChat Pay is not configured (WECHATPAY_PRIVATE_KEY_FILE is unset):"
            " nothing to reconcile"
        )
    minutes = older_than_minutes or extensions.settings.get().PAYMENT_RECONCILE_AFTER_MINUTES
    report = reconciliation.reconcile(
        extensions.session(), context, older_than=timedelta(minutes=minutes)
    )
    click.echo(
        f"payments reconcile: {report.payments_repaired} of {report.payments_checked} payments"
        f" and {report.refunds_repaired} of {report.refunds_checked} refunds repaired"
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(seed_command)
    app.cli.add_command(grant_admin_command)
    app.cli.add_command(orders_group)
    app.cli.add_command(payments_group)
