# The ml-connector image of docker-compose.yml: every process (worker, receiver, CLI) is the
# `ml-connector` command; configuration comes from the environment (README, Configuration).
#
# Base image pinned by digest, so a rebuild gets the same OS and Python: python 3.11.10-slim on
# Debian bookworm (what the `3.11-slim` tag pointed to for that release). The digest was taken from
# public Dockerfiles that pin this tag (e.g. nalabelle/build, images/digests.Dockerfile, which
# Renovate keeps at the tag's published digest). Refresh: `docker buildx imagetools inspect
# python:3.11-slim-bookworm` (or `crane digest python:3.11-slim-bookworm`), then replace the tag
# and the digest below together and rebuild.
FROM python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16
WORKDIR /app
# Exactly the locked dependencies, each file checked against its hash (`make lock` writes the
# lock); its own layer, so a code change does not reinstall them.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
# Production code only: no sandbox/, tests/, bench/ or starter/sandboxes/ (.dockerignore).
COPY pyproject.toml README.md worker.py ./
COPY activities ./activities
COPY connections ./connections
COPY connectors ./connectors
COPY starter ./starter
COPY workflows ./workflows
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && useradd --system --home-dir /var/lib/ml-connector --create-home ml-connector
USER ml-connector
ENV ML_CONNECTOR_HOME=/var/lib/ml-connector PYTHONUNBUFFERED=1
ENTRYPOINT ["ml-connector"]
CMD ["worker"]
