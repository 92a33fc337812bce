"""gunicorn settings, read from the environment.

Run as `gunicorn -c gunicorn.conf.py 'minishop:create_app()'`.

HOST / PORT / WEB_CONCURRENCY / GUNICORN_THREADS / GUNICORN_TIMEOUT are the knobs; the
defaults suit a 2-core machine and are revisited by the benchmark harness.
"""

import os

from minishop.config import load_settings

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
control_socket_disable = True  # several servers may run side by side (tests, bench)
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def on_starting(server: object) -> None:
    """Refuse to start the master at all with an unsafe configuration (one line, exit 1)."""
    load_settings()
