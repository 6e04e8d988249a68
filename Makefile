# The two commands a new user needs:  make demo   and   make test
# Everything else is a step they depend on.

PYTHON  ?= python3
VENV    ?= .venv
CLUSTER ?= local
BIN      = $(VENV)/bin
export GOTOOLCHAIN ?= local

.PHONY: kserve-venv seaweedfs real-node e2e-kind images images-docker deploy crds grpc-stubs help venv system-deps binaries demo demo-recommender demo-kind test test-unit lint up down status constraints bench clean

help:
	@echo "make demo        set up everything and run the demo on the embedded local cluster"
	@echo "make demo NODE=process   the same on the process node (pods as processes, no images to build)"
	@echo "make demo CLUSTER=kind   the same on a kind cluster (needs Docker and kind)"
	@echo "make demo-recommender    the recommender's loop: top-k serving, hit rate falling and recovering (NODE= as above)"
	@echo "make test        run the whole test suite (unit + integration on a real control plane)"
	@echo "make test-unit   the unit tests alone (no cluster)"
	@echo "make lint        ruff, mypy and the import layers (lint-imports); configured in pyproject.toml"
	@echo "make up / down / status  start, stop, inspect the local cluster"
	@echo "make bench       run the benchmarks in benchmarks/"
	@echo "make deploy      install the operator into the current kube context (kubectl apply -k)"

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed

# The local node needs iproute2 (ip), util-linux (nsenter) and nftables (nft, for kube-proxy);
# the tests check the alerting rules with promtool (Debian's prometheus package). The real
# node's images need buildah and mmdebstrap, its runc libseccomp (headers: libseccomp-dev,
# pkg-config, gcc) and the static pause binary libc6-dev.
# Installed from Debian's packages when missing and we are root; otherwise say what to install.
system-deps:
	@missing=""; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v nsenter >/dev/null || missing="$$missing util-linux"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v buildah >/dev/null || missing="$$missing buildah"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	[ -f /usr/include/seccomp.h ] || missing="$$missing libseccomp-dev"; \
	[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -f /usr/lib/libc.a ] || missing="$$missing libc6-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing"; exit 1; fi; \
	fi

# etcd and the Kubernetes components: cached under ~/.cache/mlops, built once from Go modules
# when the release download is unreachable.
binaries: venv system-deps
	$(BIN)/mlops binaries

# The real node: kubelet, containerd, runc, CNI plugins, crictl and CoreDNS from their Go
# modules (cached like the control plane), and the images it runs (make images).
real-node: binaries
	$(BIN)/mlops binaries --real-node
	$(BIN)/mlops images

# NODE=real (default): the built images under the upstream kubelet + containerd (see README,
# "Two kinds of node"; why it is the default: benchmarks/README.md, "realnode").
# NODE=process: pods run as processes of the project's environment (no image builds).
NODE ?= real
DEMO_DEPS = $(if $(filter process,$(NODE)),binaries,real-node)

ifeq ($(CLUSTER),kind)
demo: demo-kind
else
demo: $(DEMO_DEPS)
	$(BIN)/mlops demo --nodes $(NODE)
endif

# The retail recommender (issue 20): ranking, top-k serving, hit rate over time, retrained when
# the season changes; on the same local cluster as `make demo`.
demo-recommender: $(DEMO_DEPS)
	$(BIN)/mlops demo-recommender --nodes $(NODE)

demo-kind: venv
	@command -v kind >/dev/null || { echo "kind is not installed (https://kind.sigs.k8s.io)"; exit 1; }
	kind get clusters | grep -qx mlops || kind create cluster --name mlops
	kubectl --context kind-mlops apply -f examples/local-cluster/hello.yaml
	kubectl --context kind-mlops get deploy,rs,pods -n mlops-hello

# SeaweedFS for tests/integration/test_store_s3.py: built once (~9 min on 2 cores, cached under
# ~/.cache/mlops/seaweedfs), here rather than inside a test fixture's time limit
seaweedfs: venv
	$(BIN)/mlops binaries --seaweedfs

test: real-node seaweedfs kserve-venv
	$(BIN)/pytest

# KServe's own Python client (tests/unit/test_serving_grpc.py drives our gRPC server with it):
# kserve 0.21 does not install next to the project's pins (python-dateutil, kubernetes), so it
# gets a virtualenv of its own under the cache, made once (~40 s)
KSERVE_VENV ?= $(HOME)/.cache/mlops/kserve-venv
kserve-venv:
	@test -x $(KSERVE_VENV)/bin/python && $(KSERVE_VENV)/bin/python -c "import kserve" 2>/dev/null || { \
	  python3 -m venv $(KSERVE_VENV) && \
	  $(KSERVE_VENV)/bin/pip install -q --disable-pip-version-check kserve==0.21.0 grpcio==1.81.2; }

# The images, built here with no Docker daemon and no registry pull: a Debian base made by
# mmdebstrap, then buildah (apt-get install buildah mmdebstrap). OCI archives and images.json
# under ~/.cache/mlops/images; rebuilt only when their inputs change (--force: always).
images: venv
	$(BIN)/mlops images

# The same Dockerfiles with Docker (BuildKit), FROM the public python:3.11-slim.
images-docker:
	docker build -f images/runtime.Dockerfile -t ghcr.io/mlops-dev/mlops-runtime:0.1.0 .
	docker build -f images/server.Dockerfile -t ghcr.io/mlops-dev/mlops-server:0.1.0 .
	docker build -f images/operator.Dockerfile -t ghcr.io/mlops-dev/mlops-operator:0.1.0 .

# The operator into the current kube context (kind or any cluster): CRDs, RBAC, admission policy,
# Deployment; cluster-wide mode (overlays/dev; overlays/production is namespace-scoped).
deploy:
	kubectl apply -k manifests/overlays/dev

# For users and CI systems with Docker: a kind cluster, the images built and loaded, the
# operator deployed from manifests/, then the retail loop end to end (not run here: our
# machines have no container engine).
KIND_NAME ?= mlops
e2e-kind: venv
	@command -v kind >/dev/null && command -v docker >/dev/null || { echo "e2e-kind needs docker and kind"; exit 1; }
	kind get clusters | grep -qx $(KIND_NAME) || kind create cluster --name $(KIND_NAME)
	$(MAKE) images-docker
	kind load docker-image --name $(KIND_NAME) ghcr.io/mlops-dev/mlops-runtime:0.1.0 ghcr.io/mlops-dev/mlops-server:0.1.0 ghcr.io/mlops-dev/mlops-operator:0.1.0
	kubectl --context kind-$(KIND_NAME) apply -k manifests/overlays/dev
	kubectl --context kind-$(KIND_NAME) rollout status deploy/mlops-operator -n mlops-system --timeout=300s
	$(BIN)/python -m mlops_operator.cli.retail_loop --context kind-$(KIND_NAME) -n retail

# CRDs are generated from the pydantic models in operator/mlops_operator/api
crds: venv
	$(BIN)/python -m mlops_operator.api.crd crds

# the model server's gRPC messages (operator/mlops_operator/serving/proto): protoc from grpcio-tools
# (dev extra) compiles grpc_predict_v2.proto into the checked-in grpc_predict_v2_pb2.py/.pyi;
# tests/unit/test_serving_grpc.py fails when they are stale
grpc-stubs: venv
	$(BIN)/python -m mlops_operator.serving.proto

# the tests under tests/unit (marked `unit` by tests/conftest.py): no cluster, no binaries
test-unit: venv kserve-venv
	$(BIN)/pytest -m unit

# ruff (rules), mypy (types), lint-imports (the import layers): all configured in pyproject.toml
lint: venv
	$(BIN)/ruff check
	$(BIN)/mypy
	$(BIN)/lint-imports

up: binaries
	$(BIN)/mlops up --name $(CLUSTER)

down: venv
	$(BIN)/mlops down --name $(CLUSTER)

status: venv
	$(BIN)/mlops status --name $(CLUSTER)

bench: binaries
	$(BIN)/python -m benchmarks.cluster_start

constraints: venv
	@{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^mlops-operator'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) *.egg-info operator/*.egg-info .pytest_cache
