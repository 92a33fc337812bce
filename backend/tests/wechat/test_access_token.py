"""One access token for every worker: single-flight refresh through Redis, against the emulator."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from minishop import config, create_app, extensions
from wechat_emulator.testing import EmulatorControl

THREADS_PER_PROCESS = 16


def ask_for_tokens_at_once(
    settings: config.TestingSettings, go: Any, ready: Any, results: Any
) -> None:
    """Runs in a fresh process: 16 threads ask for the token the moment `go` is set."""
    app = create_app(settings)
    barrier = threading.Barrier(THREADS_PER_PROCESS)

    def ask() -> str:
        barrier.wait()
        with app.app_context():
            return extensions.wechat.get().tokens.get()

    with ThreadPoolExecutor(THREADS_PER_PROCESS) as pool:
        ready.put(True)
        go.wait(timeout=30)
        futures = [pool.submit(ask) for _ in range(THREADS_PER_PROCESS)]
        results.put([future.result(timeout=30) for future in futures])


def test_32_concurrent_askers_in_2_processes_cause_one_stable_token_call(
    settings: config.TestingSettings, app: Any, emulator: EmulatorControl
) -> None:
    context = multiprocessing.get_context("spawn")
    go, ready, results = context.Event(), context.Queue(), context.Queue()
    processes = [
        context.Process(target=ask_for_tokens_at_once, args=(settings, go, ready, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=60)
    go.set()
    tokens = [token for _ in processes for token in results.get(timeout=60)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    assert len(tokens) == 2 * THREADS_PER_PROCESS
    assert len(set(tokens)) == 1
    assert len(emulator.calls("stable_token")) == 1
    assert len(emulator.calls("token")) == 0


def test_the_token_is_refreshed_ahead_of_expiry(
    settings: config.TestingSettings, app: Any, emulator: EmulatorControl
) -> None:
    """With less than the refresh margin left, the next caller fetches a new token."""
    emulator.configure(token_ttl_seconds=400)
    app = create_app(settings.model_copy(update={"WECHAT_TOKEN_REFRESH_AHEAD_SECONDS": 300}))
    with app.app_context():
        first = extensions.wechat.get().tokens.get()
        assert extensions.wechat.get().tokens.get() == first  # 400 s left: still fresh
        assert len(emulator.calls("stable_token")) == 1

    emulator.configure(token_ttl_seconds=7200)
    emulator.advance_clock(7200)  # the emulator's token has expired: it issues a new one
    short_margin = create_app(
        settings.model_copy(update={"WECHAT_TOKEN_REFRESH_AHEAD_SECONDS": 500})
    )
    with short_margin.app_context():
        second = extensions.wechat.get().tokens.get()  # 400 s left < 500 s margin: refresh now
    assert second != first
    assert len(emulator.calls("stable_token")) == 2
