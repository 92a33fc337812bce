"""gunicorn settings, read from the environment.

Run as `gunicorn -c gunicorn.conf.py 'minishop:create_app()'`.

HOST / PORT / WEB_CONCURRENCY / GUNICORN_WORKER_CLASS / GUNICORN_THREADS / GUNICORN_TIMEOUT are the
knobs; the defaults suit a 2-core machine (see the README's Performance section). gthread and sync
are MiniShop's own subclasses of gunicorn's workers (minishop/http_server.py).

Observability (docs/logging.md): gunicorn's own lines are JSON in the application's schema and
its access log is off, because the app writes the one access line per request itself (it knows
the route template, the user and the trace). Prometheus runs in multiprocess mode over
PROMETHEUS_MULTIPROC_DIR (default: a directory in the temp dir named after the master's pid,
removed at exit); with METRICS_PORT set, the master serves /metrics on that port.
"""

import gc
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from gunicorn.http import wsgi


def _own_metrics_dir(master_pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"minishop-metrics-{master_pid}")


# prometheus_client picks multiprocess mode when it is first imported, which importing minishop
# does, and writes there at once: the directory must exist before that. on_starting empties it
# (not here: a reload re-reads this file while the workers are writing there).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _own_metrics_dir(os.getpid()))
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from minishop import __version__  # noqa: E402
from minishop.config import Settings, load_settings  # noqa: E402
from minishop.observability import logs, metrics  # noqa: E402

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# 1 per core x 8 threads by default (`make bench-tuning`: a lower p99, more req/s and orders/s than
# 2 per core x 4, as many threads to wait on WeChat); the README's Performance section says more.
workers = int(os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 1)))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
# gunicorn runs `sync` with more than one thread as gthread; decided here, so that it is ours.
if worker_class == "sync" and threads > 1:
    worker_class = "gthread"
# MiniShop's subclasses (minishop/http_server.py): the envelope instead of gunicorn's HTML error
# pages, `100 Continue` only once the app reads the body, and a refused body read through so the
# client sees the answer. Any other class (gevent, a dotted path) is gunicorn's as it is.
worker_class = {
    "gthread": "minishop.http_server.ThreadWorker",
    "sync": "minishop.http_server.SyncWorker",
}.get(worker_class, worker_class)
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
control_socket_disable = True  # several servers may run side by side (tests, bench)
# Each worker builds the app after the fork, so database pools, the tracer provider and its
# exporter thread, and the SkyWalking agent all belong to one worker: none survives a fork.
preload_app = False
errorlog = "-"
accesslog = None
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logger_class = logs.GunicornLogger
logconfig_dict = logs.gunicorn_logconfig(
    loglevel,
    service=os.environ.get("SERVICE_NAME", Settings.model_fields["SERVICE_NAME"].default),
    version=__version__,
    env=os.environ.get("APP_ENV", "development"),
)


def _without_server_banner(
    default_headers: Callable[[wsgi.Response], list[str]],
) -> Callable[[wsgi.Response], list[str]]:
    """gunicorn writes `Server: gunicorn` itself, with no setting to stop it: drop that line."""

    def headers(response: wsgi.Response) -> list[str]:
        return [line for line in default_headers(response) if not line.startswith("Server:")]

    headers.strips_banner = True
    return headers


if not getattr(wsgi.Response.default_headers, "strips_banner", False):  # a reload re-reads this
    wsgi.Response.default_headers = _without_server_banner(wsgi.Response.default_headers)


def on_starting(server: Any) -> None:
    """Refuse to start the master at all with an unsafe configuration (one line, exit 1).

    Then forget the samples of any earlier run that used the same metrics directory.
    """
    load_settings()
    metrics.empty_multiprocess_dir()


def when_ready(server: Any) -> None:
    """With METRICS_PORT set, serve /metrics from the master, which outlives every worker."""
    settings = load_settings()
    if settings.METRICS_ENABLED and settings.METRICS_PORT is not None:
        metrics.serve_from_master(
            server.pid,
            settings.METRICS_PORT,
            settings.METRICS_HOST,
            worker_memory_limit=settings.WORKER_MEMORY_LIMIT_BYTES,
        )


def post_fork(server: Any, worker: Any) -> None:
    """A worker's /metrics (development, testing) describes every process of the server."""
    metrics.describe_server(server.pid)


def post_worker_init(worker: Any) -> None:
    """The app is built: take everything made so far out of the garbage collector's reach.

    A full collection walked the ~150,000 long-lived objects of the app and its libraries in
    70-90 ms, every thread of the worker stopped meanwhile (about once per 20,000 requests: a
    p99.9 stall under load); frozen, the same collection takes about 1 ms. Measured in-process,
    docs/performance/profile-request.md ("Round 3").
    """
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    metrics.worker_exited(worker.pid)


def on_exit(server: Any) -> None:
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if directory == _own_metrics_dir(server.pid):
        shutil.rmtree(directory, ignore_errors=True)
