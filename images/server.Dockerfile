# syntax=docker/dockerfile:1
# The model server image: `python -m mlops_operator.serving` (InferenceService pods) with only
# the model server's dependencies (images/server-requirements.txt; pins from constraints.txt).
# Built here without Docker by `make images` (a Debian bookworm base made with mmdebstrap, then
# buildah; see operator/mlops_operator/localcluster/images.py). With Docker, from the repository
# root:  docker build -f images/server.Dockerfile -t ghcr.io/mlops-dev/mlops-server:0.1.0 .
# BASE: an image with python3.11 (python:3.11-slim, or the base `mlops images` makes). When the
# build host needs a proxy's CA bundle to reach the package index, it comes in as the build
# secret `ca` (--secret id=ca,src=$SSL_CERT_FILE): mounted for the RUN steps, never in a layer.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
# binutils: strip for the extension modules (slim-venv.sh); only in this build stage
# hadolint ignore=DL3008
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY constraints.txt images/server-requirements.txt ./
# the dependencies first: a layer that survives changes to the project's source
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python3 -m venv /opt/mlops \
 && /opt/mlops/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt -r server-requirements.txt
COPY pyproject.toml README.md images/slim-venv.sh images/prune-pyarrow.sh ./
COPY operator ./operator
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && /opt/mlops/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && sh prune-pyarrow.sh /opt/mlops \
 && sh slim-venv.sh /opt/mlops mlops_operator.serving.run mlops_operator.serving.app \
    mlops_operator.serving.grpc_service mlops_operator.store.s3 uvloop onnxruntime pyarrow.parquet \
    pyarrow.compute

FROM ${BASE}
LABEL org.opencontainers.image.title="mlops-server" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://github.com/mlops-dev/mlops-operator"
COPY --from=build /opt/mlops /opt/mlops
ENV PATH=/opt/mlops/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin mlops
USER 1000
ENTRYPOINT ["python", "-m", "mlops_operator.serving"]
