# readersviews in a container: slim Python, a non-root user, the database on a volume.
#   docker build -t readersviews .
#   docker run -d --name readersviews -e DISCORD_TOKEN=... -v readersviews-data:/srv/readersviews/data readersviews
# Your own settings: mount a file over /srv/readersviews/config/config.yaml (read-only); keep
# `metrics.listen: 0.0.0.0:9108` in it, which the HEALTHCHECK asks, and a database.path under data/.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/readersviews
COPY pyproject.toml README.md LICENSE /src/
COPY bot /src/bot
COPY cogs /src/cogs
RUN /opt/readersviews/bin/pip install /src && rm -rf /src

RUN useradd --system --uid 10001 --home-dir /srv/readersviews --shell /usr/sbin/nologin readersviews \
    && install -d -o readersviews -g readersviews -m 0700 /srv/readersviews/data \
    && install -d -m 0755 /srv/readersviews/config
# The default config (relative paths are relative to this file's folder: ../data is the volume).
COPY deploy/container.yaml /srv/readersviews/config/config.yaml
WORKDIR /srv/readersviews
USER readersviews
VOLUME ["/srv/readersviews/data"]
EXPOSE 9108
ENV PATH=/opt/readersviews/bin:$PATH

# Asks the bot's /healthz: 200 when the gateway is connected and the database takes writes.
HEALTHCHECK --interval=30s --timeout=15s --start-period=5m --retries=3 CMD ["readersviews", "health"]
ENTRYPOINT ["readersviews"]
CMD ["run"]
