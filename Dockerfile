# The ml-connector image of docker-compose.yml: every process (worker, receiver, CLI) is the
# `ml-connector` command; configuration comes from the environment (README, Configuration).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md worker.py ./
COPY activities ./activities
COPY connections ./connections
COPY connectors ./connectors
COPY sandbox ./sandbox
COPY starter ./starter
COPY workflows ./workflows
RUN pip install --no-cache-dir . && useradd --system --home-dir /var/lib/ml-connector --create-home ml-connector
USER ml-connector
ENV ML_CONNECTOR_HOME=/var/lib/ml-connector PYTHONUNBUFFERED=1
ENTRYPOINT ["ml-connector"]
CMD ["worker"]
