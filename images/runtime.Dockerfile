# The runtime image: snapshot, training and verification Jobs, and the model server.
# Build from the repository root:  docker build -f images/runtime.Dockerfile -t ghcr.io/mlops-dev/mlops-runtime:0.1.0 .
# Not built in CI here (no container engine on our machines); the local cluster runs the
# same entrypoint as a process (see IMAGE_ENTRYPOINTS in localcluster/node/podspec.py).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
RUN python -m venv /opt/mlops \
 && /opt/mlops/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="mlops-runtime" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://github.com/mlops-dev/mlops-operator"
COPY --from=build /opt/mlops /opt/mlops
ENV PATH=/opt/mlops/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin mlops
USER 1000
ENTRYPOINT ["mlops"]
