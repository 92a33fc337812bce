"""`make observability-up`: Prometheus and Alertmanager, with our configuration and rules, next
to `make run`, for an SRE to click around: Prometheus on 127.0.0.1:9090 scrapes the app on
127.0.0.1:$PORT (8000) every 5 s, Alertmanager on 127.0.0.1:9093 sends WeChat Work messages to
the WeChat emulator of `make run` (127.0.0.1:$EMULATOR_PORT, 8001: see them at
/__emulator/messages?kind=wecom). When pipelines/build-jaeger.sh has built Jaeger, it runs too
(observability/jaeger/config.yaml: OTLP on 4317/4318, query API on 16686); start `make run` with
TRACING_BACKEND=otel OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 to send it traces.
Ctrl-C stops them all.

The configurations are prepared exactly as the end-to-end test prepares them
(backend/tests/platform/alerting.py, prometheus_server.py): a copy with the local addresses and
the emulator's development WeChat Work credentials; the rules are the committed ones.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from tests.platform.alerting import running_alertmanager
from tests.platform.prometheus_server import running_prometheus
from tests.platform.test_traces import JAEGER_CONFIG, TOOLS_DIR

PROMETHEUS_PORT, ALERTMANAGER_PORT = 9090, 9093
SCRAPE_INTERVAL = "5s"
JAEGER_LOG = Path(__file__).resolve().parents[1] / "backend" / "instance" / "jaeger.log"


@contextlib.contextmanager
def running_jaeger() -> Iterator[str | None]:
    """Jaeger on its configured ports if it was built, else nothing (the URL, or None)."""
    binary = TOOLS_DIR / "bin" / "jaeger"
    if not binary.exists():
        yield None
        return
    command = [str(binary), f"--config={JAEGER_CONFIG}"]
    JAEGER_LOG.parent.mkdir(parents=True, exist_ok=True)
    with JAEGER_LOG.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: S603  (our own build)
    try:
        yield "http://127.0.0.1:16686"
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> int:
    app = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
    emulator = f"http://127.0.0.1:{os.environ.get('EMULATOR_PORT', '8001')}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with (
        running_alertmanager(emulator, port=ALERTMANAGER_PORT) as alertmanager,
        running_prometheus(
            app_target=app,
            alertmanager=alertmanager.url.removeprefix("http://"),
            interval=SCRAPE_INTERVAL,
            port=PROMETHEUS_PORT,
        ) as prometheus,
        running_jaeger() as jaeger,
    ):
        alerts = f"{prometheus.url}/classic/alerts"  # Debian's build serves the classic UI
        print(f"Prometheus    {prometheus.url} (alerts: {alerts})", flush=True)
        print(f"Alertmanager  {alertmanager.url}", flush=True)
        print(f"WeChat Work   {emulator}/__emulator/messages?kind=wecom", flush=True)
        print(f"Jaeger        {jaeger or 'not built (pipelines/build-jaeger.sh)'}", flush=True)
        print(f"scraping      http://{app}/metrics; Ctrl-C stops", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
