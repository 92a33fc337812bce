"""MiniShop's Grafana dashboards, as code (grafanalib).

    .venv/bin/python observability/grafana/dashboards.py        # rewrites dashboards/*.json

Grafana loads the JSON through provisioning/dashboards/minishop.yml, from the Prometheus data
source of provisioning/datasources/prometheus.yml (uid `prometheus`). Panels read the recording
rules of helm/minishop/files/prometheus-rules/recording.yml where one exists, raw metrics
(docs/logging.md, docs/payments.md) otherwise. A counter that only exists once something
happened (a refused notification, a stock-out) is written `... or vector(0)`, so its panel shows
0, not "no data".
backend/tests/platform/test_observability_stack.py asks a real Prometheus every query here under
load, and checks that the committed JSON is what this file writes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, Stat, Target, TimeSeries

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
API = 'route!~"/healthz|/readyz|/metrics"'  # API traffic, as the recording rules define it
PANEL_WIDTH, PANEL_HEIGHT, COLUMNS = 12, 8, 2


def series(title: str, unit: str, *queries: tuple[str, str], description: str = "") -> TimeSeries:
    """A time series panel; each query is (PromQL, legend)."""
    return TimeSeries(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        unit=unit,
        targets=[
            Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + n), datasource=DATASOURCE)
            for n, (expr, legend) in enumerate(queries)
        ],
    )


def stat(title: str, unit: str, expr: str, description: str = "") -> Stat:
    return Stat(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        format=unit,
        reduceCalc="lastNotNull",
        targets=[Target(expr=expr, refId="A", datasource=DATASOURCE)],
    )


def laid_out(panels: list[TimeSeries | Stat]) -> list[TimeSeries | Stat]:
    """Two panels a row, in the order given."""
    for n, panel in enumerate(panels):
        panel.gridPos = GridPos(
            h=PANEL_HEIGHT,
            w=PANEL_WIDTH,
            x=(n % COLUMNS) * PANEL_WIDTH,
            y=(n // COLUMNS) * PANEL_HEIGHT,
        )
    return panels


def dashboard(uid: str, title: str, description: str, panels: list[TimeSeries | Stat]) -> Dashboard:
    return Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=["minishop"],
        timezone="browser",
        refresh="30s",
        panels=laid_out(panels),
    ).auto_panel_ids()


def overview() -> Dashboard:
    return dashboard(
        "minishop-overview",
        "MiniShop / Service overview",
        "Requests, errors and duration per route (the RED view).",
        [
            series(
                "Requests per second, by route",
                "reqps",
                (
                    "sum by (method, route) (namespace_job_method_route:http_requests:rate5m)",
                    "{{method}} {{route}}",
                ),
            ),
            series(
                "5xx ratio of API traffic",
                "percentunit",
                ("sum by (job) (namespace_job:http_requests_5xx:ratio_rate5m)", "{{job}}"),
                description="HighErrorRate pages above 5 % for 3 minutes.",
            ),
            series(
                "5xx ratio, by route",
                "percentunit",
                (
                    "max by (method, route) "
                    "(namespace_job_method_route:http_requests_5xx:ratio_rate5m)",
                    "{{method}} {{route}}",
                ),
            ),
            series(
                "p99 duration, by route",
                "s",
                (
                    "max by (method, route) (namespace_job_method_route:"
                    'http_request_duration_seconds:histogram_quantile_rate5m{quantile="0.99"})',
                    "{{method}} {{route}}",
                ),
            ),
            series(
                "p50 duration, by route",
                "s",
                (
                    "max by (method, route) (namespace_job_method_route:"
                    'http_request_duration_seconds:histogram_quantile_rate5m{quantile="0.5"})',
                    "{{method}} {{route}}",
                ),
            ),
            series(
                "Requests in flight",
                "short",
                ("sum(http_requests_in_flight)", "in flight"),
            ),
            series(
                "Refused: rate limits (429) and request signatures (40102)",
                "reqps",
                ("sum(rate(minishop_rate_limited_total[5m])) or vector(0)", "rate limited"),
                ("sum(rate(minishop_bad_signatures_total[5m])) or vector(0)", "bad signature"),
            ),
            series(
                "Responses by status class",
                "reqps",
                (
                    f"sum by (class) (label_replace(rate(http_requests_total{{{API}}}[5m]),"
                    ' "class", "${1}xx", "status", "([0-9]).."))',
                    "{{class}}",
                ),
            ),
        ],
    )


def business() -> Dashboard:
    per_minute = "sum(rate({}[5m])) * 60"
    return dashboard(
        "minishop-business",
        "MiniShop / Business",
        "Orders, payments, conversion, refunds and stock-outs (docs/payments.md).",
        [
            series(
                "Orders per minute",
                "short",
                (per_minute.format("minishop_orders_created_total"), "placed"),
                (per_minute.format("minishop_orders_paid_total"), "paid"),
                (per_minute.format("minishop_orders_cancelled_total"), "cancelled by buyer"),
                (per_minute.format("minishop_orders_expired_total"), "expired"),
            ),
            stat(
                "Conversion, last hour (paid / placed)",
                "percentunit",
                "sum(increase(minishop_orders_paid_total[1h]))"
                " / sum(increase(minishop_orders_created_total[1h]))",
            ),
            stat(
                "Revenue, last hour (yuan)",
                "currencyCNY",
                "sum(increase(minishop_orders_paid_amount_fen_total[1h])) / 100",
            ),
            series(
                "Payment outcomes",
                "short",
                ("sum by (result) (rate(minishop_payments_total[5m])) * 60", "{{result}}"),
                description="Per minute: paid, duplicate notifications, paid after cancel, ...",
            ),
            series(
                "Refused payment notifications, by reason",
                "short",
                (
                    "sum by (reason) (rate("
                    "minishop_payment_notify_verification_failures_total[5m])) * 60"
                    " or vector(0)",
                    "{{reason}}",
                ),
                description="PaymentNotifyVerificationFailures alerts on these.",
            ),
            series(
                "Refunds",
                "short",
                (
                    "sum by (result) (rate(minishop_refunds_total[5m])) * 60 or vector(0)",
                    "{{result}}",
                ),
                (
                    "sum(rate(minishop_paid_after_cancel_refunds_total[5m])) * 60 or vector(0)",
                    "paid after cancel (automatic)",
                ),
            ),
            series(
                "Stock-outs (orders refused with 40901)",
                "short",
                (
                    per_minute.format("minishop_orders_out_of_stock_total") + " or vector(0)",
                    "stock-outs",
                ),
            ),
            series(
                "Logins per minute",
                "short",
                (per_minute.format("minishop_logins_total"), "logins"),
            ),
        ],
    )


def slo() -> Dashboard:
    windows = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    budget_left = (
        f'1 - (sum(increase(http_requests_total{{status=~"5..", {API}}}[30d]))'
        f" / sum(increase(http_requests_total{{{API}}}[30d]))) / 0.001"
    )
    return dashboard(
        "minishop-slo",
        "MiniShop / SLOs",
        "Availability 99.9 % (no 5xx) and latency 99 % within 1 s, over 30 days; burn rate 1 "
        "spends the budget in exactly 30 days "
        "(helm/minishop/files/prometheus-rules/recording.yml).",
        [
            stat("Availability error budget left (30 days)", "percentunit", budget_left),
            stat(
                "Latency SLI, last hour (share within 1 s)",
                "percentunit",
                f'sum(increase(http_request_duration_seconds_bucket{{le="1.0", {API}}}[1h]))'
                f" / sum(increase(http_request_duration_seconds_count{{{API}}}[1h]))",
            ),
            series(
                "Availability burn rate",
                "short",
                *[
                    (f"max(namespace_job:slo_availability:burnrate{window})", window)
                    for window in windows
                ],
                description="Pages at 14.4 (1h and 5m) or 6 (6h and 30m); tickets at 3 or 1.",
            ),
            series(
                "Latency burn rate",
                "short",
                *[
                    (f"max(namespace_job:slo_latency:burnrate{window})", window)
                    for window in windows
                ],
            ),
        ],
    )


def runtime() -> Dashboard:
    return dashboard(
        "minishop-runtime",
        "MiniShop / Runtime",
        "gunicorn workers, memory, CPU, the database pool, the cache and WeChat.",
        [
            stat(
                "Workers",
                "short",
                'count(minishop_process_resident_memory_bytes{role="worker"})',
            ),
            series(
                "Resident memory, by process",
                "bytes",
                ("minishop_process_resident_memory_bytes", "{{role}} {{pid}}"),
                description="WorkerMemoryHigh warns above 85 % of the worker limit.",
            ),
            series(
                "CPU, by process",
                "percentunit",
                ("rate(minishop_process_cpu_seconds_total[5m])", "{{role}} {{pid}}"),
            ),
            series(
                "Database pool",
                "short",
                ("sum(minishop_db_pool_checked_out_connections)", "checked out"),
                ("sum(minishop_db_pool_overflow_connections)", "overflow"),
            ),
            series(
                "Database statement p99, by operation",
                "s",
                (
                    "histogram_quantile(0.99, sum by (operation, le) "
                    "(rate(minishop_db_query_duration_seconds_bucket[5m])))",
                    "{{operation}}",
                ),
            ),
            series(
                "Cache hit ratio, by cache",
                "percentunit",
                (
                    "sum by (cache) (rate(minishop_cache_hits_total[5m])) / (sum by (cache) "
                    "(rate(minishop_cache_hits_total[5m])) + sum by (cache) "
                    "(rate(minishop_cache_misses_total[5m])))",
                    "{{cache}}",
                ),
            ),
            series(
                "Cache fallbacks to the database (Redis unavailable)",
                "reqps",
                (
                    "sum by (cache) (rate(minishop_cache_fallbacks_total[5m])) or vector(0)",
                    "{{cache}}",
                ),
            ),
            series(
                "WeChat calls, by API and outcome",
                "reqps",
                (
                    "sum by (api, outcome) (rate(minishop_wechat_calls_total[5m]))",
                    "{{api}} {{outcome}}",
                ),
            ),
            series(
                "WeChat call p99, by API",
                "s",
                (
                    "histogram_quantile(0.99, sum by (api, le) "
                    "(rate(minishop_wechat_call_duration_seconds_bucket[5m])))",
                    "{{api}}",
                ),
            ),
        ],
    )


DASHBOARDS = {"overview": overview, "business": business, "slo": slo, "runtime": runtime}


def rendered() -> dict[str, str]:
    """File name → the JSON Grafana provisioning loads."""
    return {
        f"minishop-{name}.json": json.dumps(
            build().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True
        )
        + "\n"
        for name, build in DASHBOARDS.items()
    }


def queries(document: dict[str, object]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every query of a dashboard's JSON."""
    for panel in document["panels"]:  # type: ignore[attr-defined]
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def main() -> int:
    OUTPUT.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUTPUT / name).write_text(text)
        print(f"wrote {OUTPUT / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
