# MiniShop backend image. Build from the repository root: docker build -t minishop-backend .
# Run migrations with the same image: docker run --rm IMAGE flask --app minishop db upgrade

# Builder: the locked dependencies and the package, installed into a venv that is copied as a whole.
FROM python:3.11-slim-bookworm AS builder

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, so that a code change does not re-download them.
COPY backend/requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock

# Only what the wheel is built from (no tests), for the same reason.
COPY backend/pyproject.toml /src/backend/
COPY backend/minishop /src/backend/minishop
RUN pip install --no-cache-dir --no-deps /src/backend


# The WeChat emulator (tools/wechat_emulator) for docker-compose and load tests: `--target wechat-emulator`.
FROM python:3.11-slim-bookworm AS wechat-emulator
COPY --from=builder /opt/venv /opt/venv
COPY tools/wechat_emulator /src/wechat_emulator
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /src/wechat_emulator \
    && useradd --system --no-log-init --uid 10001 emulator
USER 10001
EXPOSE 8001
CMD ["/opt/venv/bin/python", "-m", "wechat_emulator", "--host", "0.0.0.0", "--port", "8001"]


FROM python:3.11-slim-bookworm

# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 minishop \
    && useradd --system --no-log-init --uid 10001 --gid minishop --home-dir /app --shell /usr/sbin/nologin minishop

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    APP_ENV=production

COPY --from=builder /opt/venv /opt/venv
# The folders the app writes to, owned by the service user (the rest of the image is not):
# Flask's instance folder of the installed package, /opt/venv/var/minishop-instance (the default
# UPLOAD_DIR is its uploads/, and the embedded store without Redis), and the places the Helm chart
# and docker-compose mount volumes at: UPLOAD_DIR and PROMETHEUS_MULTIPROC_DIR.
RUN install -d -o 10001 -g 10001 -m 0750 \
        /opt/venv/var/minishop-instance \
        /opt/venv/var/minishop-instance/uploads \
        /var/lib/minishop/uploads \
        /var/run/minishop/metrics
WORKDIR /app
# Owned by root and read-only for the service user: the code cannot be changed at run time.
COPY backend/gunicorn.conf.py ./
COPY backend/migrations ./migrations

USER 10001:10001
EXPOSE 8000

# slim images have no curl; Python's urllib fails on connection errors and non-2xx answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "minishop:create_app()"]
