# sync-daemon as a service: slim Python, non-root, config and state from the outside.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SYNC_DAEMON_CONFIG=/etc/sync-daemon/sync-daemon.toml

RUN useradd --system --uid 10001 --home-dir /var/lib/sync-daemon --create-home sync-daemon

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sync_daemon ./sync_daemon
RUN pip install . && rm -rf /src

USER sync-daemon
WORKDIR /var/lib/sync-daemon
VOLUME ["/var/lib/sync-daemon"]

# `status` reads only the state database: healthy while the daemon can reach its memory,
# without spending Syncro's rate limit on health checks.
HEALTHCHECK --interval=1m --timeout=30s --start-period=30s \
    CMD ["sync-daemon", "status"]

ENTRYPOINT ["sync-daemon"]
CMD ["run"]
