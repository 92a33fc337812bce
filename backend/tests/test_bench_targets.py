"""`make bench` judges issue 14's targets (loadtest/bench_report.py, bench.py): the verdicts.

A whole run takes minutes on real servers, far too long for the suite; what can rot silently is
the judging, so it is run here on made-up measurements: a 304 row with a 200 among its answers,
an order run that does not reconcile, a split the app refused, the tuning recommendation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

LOADTEST = Path(__file__).resolve().parents[2] / "loadtest"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(LOADTEST))
    try:
        import bench as module  # the entry point imports every part of the harness
    finally:
        sys.path.remove(str(LOADTEST))
    return module


@pytest.fixture(scope="module")
def limits() -> dict[str, Any]:
    bench: dict[str, Any] = yaml.safe_load((LOADTEST / "thresholds.yml").read_text())["bench"]
    return bench


def result(bench: ModuleType, rps: float, p99: float = 10.0, failed: int = 0) -> Any:
    return bench.Result("s", rps, 1.0, 5.0, p99, int(rps * 10), failed, 100.0)


def order_run(bench: ModuleType, rate: float, left: int = 9_000, sold: int = 1_000) -> Any:
    return bench.OrderRun(result(bench, rate), rate, 10_000, left, sold, sold_out=False)


def good_run(bench: ModuleType) -> Any:
    """Every target met."""
    rounds = [
        bench.CatalogRound(
            hello=result(bench, 1000),
            detail=result(bench, 700),
            listing=result(bench, 600),
            conditional=result(bench, 900),
        )
        for _ in range(2)
    ]
    return bench.BenchRun(
        layout="4 x 4",
        rounds=rounds,
        orders=order_run(bench, 350),
        hot_single=order_run(bench, 200),
        hot_split=order_run(bench, 300),
        edge=bench.bench_report.EdgeRun(result(bench, 60_000, p99=2.0), 0.9),
        rss=bench.RssRun(300, 50, bench.bench_report.RssTrend(120, 110, 112), 10_000, 0),
    )


def verdicts(bench: ModuleType, run: Any, limits: dict[str, Any]) -> list[bool | None]:
    return [t.met for t in bench.bench_report.targets(run, limits)]


def test_every_row_of_the_issue_is_judged(bench: ModuleType, limits: dict[str, Any]) -> None:
    rows = bench.bench_report.targets(good_run(bench), limits)
    assert [t.met for t in rows] == [True] * 8
    assert "0.70 (rounds: 0.70, 0.70)" in rows[0].measured
    assert good_run(bench).oversold() == []


def test_a_single_answer_other_than_304_misses_the_conditional_row(
    bench: ModuleType, limits: dict[str, Any]
) -> None:
    run = good_run(bench)
    run.rounds[1].conditional = result(bench, 900, failed=1)
    assert verdicts(bench, run, limits)[2] is False


def test_ratios_are_judged_on_the_mean_of_the_rounds(
    bench: ModuleType, limits: dict[str, Any]
) -> None:
    run = good_run(bench)
    run.rounds[0].detail = result(bench, 450)  # 0.45 and 0.70: mean 0.575 < 0.6
    assert verdicts(bench, run, limits)[0] is False
    run.rounds[0].detail = result(bench, 520)  # 0.52 and 0.70: mean 0.61
    assert verdicts(bench, run, limits)[0] is True


def test_an_order_run_that_does_not_reconcile_misses_and_fails_the_run(
    bench: ModuleType, limits: dict[str, Any]
) -> None:
    run = good_run(bench)
    run.hot_split = order_run(bench, 400, left=8_999, sold=1_002)  # one unit oversold
    assert verdicts(bench, run, limits)[5] is False
    assert run.oversold() == ["s"]


def test_a_refused_split_is_not_measured_rather_than_met(
    bench: ModuleType, limits: dict[str, Any]
) -> None:
    run = good_run(bench)
    run.hot_split = "not measured (the app refused stock_segments)"
    row = bench.bench_report.targets(run, limits)[5]
    assert row.met is None
    assert row.verdict == "not measured"


def test_growing_memory_misses_even_under_the_ceiling(
    bench: ModuleType, limits: dict[str, Any]
) -> None:
    run = good_run(bench)
    run.rss.trend = bench.bench_report.RssTrend(130, 100, 125)  # +25 % between 2nd and last fifth
    assert verdicts(bench, run, limits)[6] is False


def test_tuning_recommends_the_fastest_layout_under_the_p99_target(bench: ModuleType) -> None:
    slow_tail = bench.Layout("fast, long tail", "gthread", 4, 8, 5)
    steady = bench.Layout("steady", "gthread", 4, 4, 5)
    fastest_steady = bench.Layout("fastest steady", "gthread", 2, 8, 5)
    measured = [
        (slow_tail, result(bench, 2000, p99=80), result(bench, 1500, p99=90)),
        (steady, result(bench, 1000, p99=30), result(bench, 800, p99=40)),
        (fastest_steady, result(bench, 1200, p99=45), result(bench, 900, p99=49)),
    ]
    assert "**Recommendation: fastest steady**" in bench.recommend(measured, 50)
    assert "**Recommendation: steady**" in bench.recommend(measured, 45)  # the only one under
    none_under = bench.recommend(measured, 20)
    assert "**Recommendation: steady**" in none_under
    assert "lowest worst p99" in none_under


def test_the_edge_row_reads_against_the_minimal_cache_of_the_same_run(
    bench: ModuleType, limits: dict[str, Any]
) -> None:
    run = good_run(bench)
    run.edge = bench.bench_report.EdgeRun(result(bench, 36_000), 0.9, result(bench, 40_000))
    row = bench.bench_report.targets(run, limits)[7]
    assert row.met is False  # the reference explains a miss, it does not excuse it
    assert "a minimal micro-cache, same run: 40,000 req/s (shipped = 0.90 of it)" in row.measured
    assert run.results()[-2:] == [run.edge.reference, run.edge.result]
