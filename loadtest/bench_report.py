"""What `make bench` measured, judged against issue 14's targets (loadtest/thresholds.yml: bench).

`BenchRun` holds one run's measurements; `targets` turns them into the targets table (each row
met, MISSED, or not measured and why), `write` puts reports/bench.md, bench.json and bench.png.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_edge import EdgeRun
from bench_shop import OrderRun
from bench_wrk import CONNECTIONS, DURATION, Result, commit, machine
from run_loadtest import RssTrend
from stack import ROOT

REPORTS = ROOT / "reports"


@dataclass
class CatalogRound:
    """One round of the alternation: the ceiling, then the catalog reads right after it."""

    hello: Result
    detail: Result
    listing: Result
    conditional: Result | None  # None: the app gave no ETag to send back


@dataclass
class RssRun:
    seconds: int
    users: int
    trend: RssTrend | None
    requests: int
    failures: int


@dataclass
class BenchRun:
    layout: str  # the gunicorn settings every scenario ran on
    rounds: list[CatalogRound]
    orders: OrderRun
    hot_single: OrderRun
    hot_split: OrderRun | str  # a reason when the split could not be measured
    edge: EdgeRun
    rss: RssRun
    others: list[Result] = field(default_factory=list)  # b0 (cache off), e (login)

    def results(self) -> list[Result]:
        """Every wrk run, in the order it ran."""
        found: list[Result] = []
        for r in self.rounds:
            found += [r.hello, r.detail, r.listing] + ([r.conditional] if r.conditional else [])
        found += [*self.others[:1], self.orders.result, self.hot_single.result]
        if isinstance(self.hot_split, OrderRun):
            found.append(self.hot_split.result)
        found += self.others[1:]
        edge = [self.edge.reference, self.edge.result]
        return found + [result for result in edge if result is not None]

    def order_runs(self) -> list[OrderRun]:
        runs = [self.orders, self.hot_single]
        return runs + ([self.hot_split] if isinstance(self.hot_split, OrderRun) else [])

    def oversold(self) -> list[str]:
        return [run.result.scenario for run in self.order_runs() if not run.reconciled]


@dataclass
class Target:
    scenario: str
    measured: str
    target: str
    met: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**MISSED**", None: "not measured"}[self.met]


def _ratios(rounds: list[CatalogRound], pick: str) -> list[float]:
    return [
        getattr(r, pick).requests_per_second / r.hello.requests_per_second
        for r in rounds
        if getattr(r, pick) is not None
    ]


def _ratio_text(ratios: list[float]) -> str:
    each = ", ".join(f"{r:.2f}" for r in ratios)
    return f"{statistics.mean(ratios):.2f} (rounds: {each})"


def _orders_text(run: OrderRun) -> str:
    return (
        f"{run.orders_per_second:.0f} orders/s, {run.result.failures} non-2xx, "
        f"{'reconciled' if run.reconciled else 'OVERSOLD / NOT RECONCILED'}"
        + (", sold out before the end" if run.sold_out else "")
    )


def targets(run: BenchRun, limits: dict[str, Any]) -> list[Target]:
    """Issue 14's table, in its order, from this one run."""
    rows = []
    for name, pick, key in (
        ("cached product detail / bare-Flask hello", "detail", "detail_ratio_min"),
        ("product list, first page, default filter / hello", "listing", "list_ratio_min"),
    ):
        ratios = _ratios(run.rounds, pick)
        rows.append(
            Target(
                name,
                _ratio_text(ratios),
                f">= {limits[key]}",
                statistics.mean(ratios) >= limits[key],
            )
        )
    conditional = [r.conditional for r in run.rounds if r.conditional]
    name = "conditional GET (If-None-Match -> 304) / hello"
    if conditional:
        ratios = _ratios(run.rounds, "conditional")
        failed = sum(r.non_2xx for r in conditional)
        rows.append(
            Target(
                name,
                f"{_ratio_text(ratios)}, {failed} answers not 304 or failed",
                f">= {limits['conditional_ratio_min']}, all 304",
                statistics.mean(ratios) >= limits["conditional_ratio_min"] and failed == 0,
            )
        )
    else:
        rows.append(Target(name, "no ETag on the product detail", ">= 0.8", None))
    worst = max(r.p99_ms for c in run.rounds for r in (c.detail, c.listing))
    detail_p99 = "/".join(f"{c.detail.p99_ms:.0f}" for c in run.rounds)
    list_p99 = "/".join(f"{c.listing.p99_ms:.0f}" for c in run.rounds)
    rows.append(
        Target(
            f"p99 of detail and list at {CONNECTIONS} connections",
            f"worst {worst:.1f} ms (detail {detail_p99} ms, list {list_p99} ms)",
            f"< {limits['p99_ms_max']} ms",
            worst < limits["p99_ms_max"],
        )
    )
    orders = run.orders
    rows.append(
        Target(
            "orders/s, 200 users over many products, signed, 0 non-2xx",
            _orders_text(orders),
            f">= {limits['orders_per_second_min']}",
            orders.orders_per_second >= limits["orders_per_second_min"]
            and orders.result.non_2xx == 0
            and orders.reconciled,
        )
    )
    name = "hot item: 200 users on one product (stock 10,000), split vs single row"
    single = run.hot_single
    if isinstance(run.hot_split, OrderRun):
        split = run.hot_split
        ratio = split.orders_per_second / single.orders_per_second
        rows.append(
            Target(
                name,
                f"{ratio:.2f}x (split: {_orders_text(split)}; single row: {_orders_text(single)})",
                f">= {limits['hot_item_ratio_min']}x, 0 oversell, reconciled",
                ratio >= limits["hot_item_ratio_min"] and split.reconciled and single.reconciled,
            )
        )
    else:
        rows.append(
            Target(
                name,
                f"single row: {_orders_text(single)}; split {run.hot_split}",
                f">= {limits['hot_item_ratio_min']}x",
                None if single.reconciled else False,
            )
        )
    rss = run.rss
    name = f"worker RSS over a {rss.seconds} s, {rss.users}-user Locust run"
    if rss.trend is None:
        rows.append(
            Target(name, "no samples", f"<= {limits['worker_rss_mib_max']} MiB, flat", None)
        )
    else:
        trend = rss.trend
        rows.append(
            Target(
                name,
                f"peak {trend.peak_mib:.0f} MiB; {trend.early_mib:.0f} MiB in the 2nd fifth, "
                f"{trend.late_mib:.0f} MiB in the last ({'flat' if trend.flat else 'GROWING'}); "
                f"{rss.requests} requests, {rss.failures} failed",
                f"<= {limits['worker_rss_mib_max']} MiB, flat",
                trend.peak_mib <= limits["worker_rss_mib_max"] and trend.flat,
            )
        )
    name = "anonymous product detail through the shipped edge cache (nginx)"
    edge = run.edge
    target = (
        f">= {limits['edge_requests_per_second_min']:,} req/s, "
        f"staleness <= {limits['edge_staleness_seconds_max']} s"
    )
    if edge.result is None or edge.staleness_seconds is None:
        rows.append(Target(name, edge.note, target, None))
    else:
        rows.append(
            Target(
                name,
                f"{edge.result.requests_per_second:,.0f} req/s (p99 {edge.result.p99_ms:.1f} ms, "
                f"{edge.result.failures} failed), staleness {edge.staleness_seconds:.2f} s"
                + _edge_reference(edge),
                target,
                edge.result.requests_per_second >= limits["edge_requests_per_second_min"]
                and edge.result.non_2xx == 0
                and edge.staleness_seconds <= limits["edge_staleness_seconds_max"],
            )
        )
    return rows


def _edge_reference(edge: EdgeRun) -> str:
    """What the plainest nginx micro-cache made on this machine in the same run."""
    if edge.reference is None or edge.result is None:
        return ""
    reference = edge.reference.requests_per_second
    share = edge.result.requests_per_second / reference if reference else 0.0
    return (
        f"; a minimal micro-cache, same run: {reference:,.0f} req/s (shipped = {share:.2f} of it)"
    )


def markdown_table(header: dict[str, str], rows: list[list[object]]) -> str:
    """A markdown table: `header` maps each column's title to its alignment row cell."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(header.values()) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(rows: list[Target]) -> str:
    header = {"scenario": "---", "measured": "---", "target": "---", "result": "---"}
    return markdown_table(header, [[t.scenario, t.measured, t.target, t.verdict] for t in rows])


def results_table(results: list[Result]) -> str:
    header = {"scenario": "---", "req/s": "---:", "p50 ms": "---:", "p95 ms": "---:"}
    header |= {"p99 ms": "---:", "requests": "---:", "failed": "---:"}
    header |= {"worker RSS MiB": "---:"}
    rows: list[list[object]] = [
        [
            r.scenario,
            f"{r.requests_per_second:.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p95_ms:.1f}",
            f"{r.p99_ms:.1f}",
            r.requests,
            r.failures,
            f"{r.peak_worker_rss_mib:.0f}",
        ]
        for r in results
    ]
    return markdown_table(header, rows)


def orders_table(runs: list[OrderRun]) -> str:
    header = {"scenario": "---", "orders/s": "---:", "initial stock": "---:"}
    header |= {"sold (database)": "---:", "stock left": "---:", "reconciled": "---"}
    rows: list[list[object]] = [
        [
            run.result.scenario,
            f"{run.orders_per_second:.0f}",
            run.initial_stock,
            run.sold,
            run.stock_left,
            ("yes" if run.reconciled else "**NO**") + (" (sold out)" if run.sold_out else ""),
        ]
        for run in runs
    ]
    return markdown_table(header, rows)


def chart(results: list[Result], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.scenario.split(" (")[0] for r in results]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 0.45 * len(results) + 2))
    left.barh(labels, [r.requests_per_second for r in results], color="#3b7dd8")
    left.set_xscale("log")  # the edge answers 10-100x what gunicorn does
    left.set_xlabel("requests per second, log scale (higher is better)")
    left.invert_yaxis()
    for y, r in enumerate(results):
        left.text(r.requests_per_second, y, f" {r.requests_per_second:.0f}", va="center")
    width = 0.27
    for offset, (attribute, colour) in enumerate(
        [("p50_ms", "#8cc084"), ("p95_ms", "#f2b134"), ("p99_ms", "#d8553b")]
    ):
        right.barh(
            [y + (offset - 1) * width for y in range(len(results))],
            [getattr(r, attribute) for r in results],
            height=width,
            color=colour,
            label=attribute.replace("_ms", ""),
        )
    right.set_yticks(range(len(results)), labels)
    right.invert_yaxis()
    right.set_xlabel(f"latency in ms at {CONNECTIONS} connections (lower is better)")
    right.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write(run: BenchRun, limits: dict[str, Any]) -> list[Target]:
    """reports/bench.md, bench.json and bench.png; prints the markdown."""
    rows = targets(run, limits)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    missed = [t.scenario for t in rows if t.met is False]
    unmeasured = [t.scenario for t in rows if t.met is None]
    met = len(rows) - len(missed) - len(unmeasured)
    text = f"""# MiniShop benchmark

- machine: {machine()}
- date: {now}; commit: {commit()}
- server: gunicorn, {run.layout}, MariaDB and Redis on the same machine, for every scenario;
  load: wrk, {CONNECTIONS} connections, {DURATION} s per scenario (the edge: more, see below)
- ratios: each to the "hello" measured just before it in the same round; the table judges
  the mean of the {len(run.rounds)} rounds and lists each
- targets: {met} met, {len(missed)} missed, {len(unmeasured)} not measured

## Targets (issue 14)

{targets_table(rows)}

## Every run

{results_table(run.results())}

"failed": answers that failed (GETs: status >= 400; the 304 rows: any status but 304;
orders and logins: any status but 2xx) plus socket errors and timeouts, by status where known.

## Orders, checked in MariaDB after each run

{orders_table(run.order_runs())}

![benchmark chart](bench.png)
"""
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "bench.md").write_text(text)
    (REPORTS / "bench.json").write_text(
        json.dumps(
            {
                "date": now,
                "commit": commit(),
                "layout": run.layout,
                "targets": [asdict(t) | {"verdict": t.verdict} for t in rows],
                "results": [asdict(r) for r in run.results()],
                "orders": [asdict(o) | {"reconciled": o.reconciled} for o in run.order_runs()],
                "edge_staleness_seconds": run.edge.staleness_seconds,
                "rss": asdict(run.rss),
            },
            indent=2,
        )
    )
    chart(run.results(), f"MiniShop benchmark, {run.layout}", REPORTS / "bench.png")
    print(text)
    return rows
