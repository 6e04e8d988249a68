"""Options of the model server: command-line flags, each also settable as `MLOPS_SERVE_<FLAG>`.

The InferenceService controller renders the Deployment with these flags; the environment
variables are for running the server by hand (a flag given on the command line wins).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

ENV_PREFIX = "MLOPS_SERVE_"


@dataclass(frozen=True)
class ServeConfig:
    store_uri: str
    model_uri: str
    digest: str
    name: str
    version: str = "1"
    host: str = "0.0.0.0"
    port: int = 8080
    monitor_port: int = 0
    #: the command line's default is 8081; a config made in code (tests, embedding) opens no
    #: second port unless asked
    grpc_port: int = 0
    threads: int = 1
    max_batch_size: int = 1024
    max_body_bytes: int = 4 * 1024 * 1024
    reservoir_size: int = 1000
    window_seconds: int = 300
    max_category_bytes: int = 256
    read_timeout_seconds: float = 30.0
    idle_timeout_seconds: float = 75.0
    drain_delay_seconds: float = 3.0
    grace_seconds: float = 20.0
    instance: str | None = None
    thread_rows: int = 0
    log_level: str = "INFO"
    capture_rate: float = 0.0
    capture_dir: str = ""
    capture_store: str = ""
    capture_service: str = ""
    capture_exclude: str = ""
    capture_max_rows: int = 20_000
    capture_chunk_rows: int = 5_000
    capture_flush_seconds: float = 30.0
    uvloop: bool = True
    #: where other Dataset versions (a DriftMonitor's reference) are read; "" means store_uri.
    #: In s3 mode the model comes from the init container's local copy (store_uri file:///models)
    #: while datasets stay in the shared s3:// store
    reference_store_uri: str = ""


# flag -> (type, default, help); None default = required
_OPTIONS: list[tuple[str, type, object, str]] = [
    ("store-uri", str, None, "root of the artifact store, e.g. file:///store"),
    ("model-uri", str, None, "URI of the model version directory in the store (holds model.onnx + model.json)"),
    ("digest", str, None, "sha256 of model.onnx; the server refuses to load anything else"),
    ("name", str, None, "model name served under /v2/models/<name>"),
    ("version", str, "1", "model version served under /v2/models/<name>/versions/<version>"),
    ("host", str, "0.0.0.0", "address to listen on"),
    ("port", int, 8080, "port to listen on"),
    ("monitor-port", int, 0, "port of the feedback, stats and reference endpoints, apart from inference so a "
                             "NetworkPolicy can keep inference clients off them (0: the same port as inference)"),
    ("grpc-port", int, 8081, "port of the Open Inference Protocol's gRPC service (inference.GRPCInferenceService), "
                           "served next to REST by the same process, model and batches (0: no gRPC)"),
    ("threads", int, 1, "ONNX Runtime intra-op threads"),
    ("max-batch-size", int, 1024, "most rows in one request (more: HTTP 413)"),
    ("max-body-bytes", int, 4 * 1024 * 1024, "largest request body (more: HTTP 413; over gRPC, the largest "
                                             "message: RESOURCE_EXHAUSTED)"),
    ("reservoir-size", int, 1000, "ignored (kept so that Deployments of older operators start): the server "
                                  "no longer samples raw rows, drift is judged on histograms"),
    ("window-seconds", int, 300, "ignored (kept so that Deployments of older operators start)"),
    ("max-category-bytes", int, 256, "a categorical value whose JSON text is longer than this is kept in the "
                                     "statistics as sha256:<16 hex digits> (the model still gets it as sent)"),
    ("read-timeout-seconds", float, 30.0, "a request body must arrive within this long once its head has (else "
                                          "HTTP 408 and the connection is closed)"),
    ("idle-timeout-seconds", float, 75.0, "a connection that sends no complete request head for this long (since it "
                                          "opened or since its last answer) is closed: idle keep-alive connections "
                                          "and stalled request heads alike"),
    ("drain-delay-seconds", float, 3.0, "after SIGTERM: keep serving, not ready, for this long (endpoints update)"),
    ("grace-seconds", float, 20.0, "then: stop listening and wait this long at most for in-flight requests"),
    ("instance", str, None, "instance id in stats (default: $POD_NAME or the host name)"),
    ("thread-rows", int, 0, "model runs of at least this many rows go to an inference thread while the event "
                            "loop goes on; helps when the pod has a spare core (0: every run in the event loop)"),
    ("log-level", str, "INFO", "logging level"),
    ("capture-rate", float, 0.0, "payload capture: the share of requests whose inputs, outputs and later labels "
                                 "are written to --capture-dir (0: off; serving/capture.py)"),
    ("capture-dir", str, "", "directory of the capture chunks (in the artifact store's volume)"),
    ("capture-store", str, "", "or: the artifact store's root URI (s3://...; credentials from AWS_* variables), "
                               "chunks under captures/<--capture-service>/ there"),
    ("capture-service", str, "", "the InferenceService whose captures these are (with --capture-store)"),
    ("capture-exclude", str, "", "comma-separated input columns never captured (privacy)"),
    ("capture-max-rows", int, 20_000, "rows buffered for capture at most; more are dropped and counted"),
    ("capture-chunk-rows", int, 5_000, "write a chunk as soon as this many rows wait"),
    ("capture-flush-seconds", float, 30.0, "write what waits at least this often"),
    ("reference-store-uri", str, "", "root of the store other Dataset versions (a DriftMonitor's reference) are "
                                     "read from (default: --store-uri; in s3 mode the shared s3:// store while "
                                     "--store-uri is the init container's local copy of the model)"),
]


def _env(flag: str) -> str | None:
    return os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mlops_operator.serving",
        description="Serve one ONNX model version over the Open Inference Protocol (V2) with drift statistics. "
                    f"Every flag can also be set as an environment variable {ENV_PREFIX}<FLAG> "
                    f"(e.g. {ENV_PREFIX}STORE_URI).")
    for flag, typ, default, help_ in _OPTIONS:
        env = _env(flag)
        if env is not None:
            try:
                default = typ(env)
            except ValueError:
                p.error(f"{ENV_PREFIX}{flag.upper().replace('-', '_')}={env!r} is not a valid {typ.__name__}")
        p.add_argument(f"--{flag}", type=typ, default=default, required=default is None and flag != "instance",
                       help=help_)
    env_uv = _env("uvloop")
    p.add_argument("--no-uvloop", dest="uvloop", action="store_false",
                   default=(env_uv or "1").lower() not in ("0", "false", "no"),
                   help="use the standard asyncio event loop even when uvloop is installed")
    return p


def parse(argv: list[str] | None = None) -> ServeConfig:
    p = parser()
    a = p.parse_args(argv)
    cfg = ServeConfig(**{k: v for k, v in vars(a).items()})
    problems = []
    if not 0 <= cfg.port < 65536:
        problems.append("--port must be 0..65535 (0: any free port)")
    if not 0 <= cfg.monitor_port < 65536 or (cfg.monitor_port and cfg.monitor_port == cfg.port):
        problems.append("--monitor-port must be 0 (the inference port) or another port 1..65535")
    if not 0 <= cfg.grpc_port < 65536 or (cfg.grpc_port and cfg.grpc_port in (cfg.port, cfg.monitor_port)):
        problems.append("--grpc-port must be 0 (no gRPC) or a port 1..65535 apart from --port and --monitor-port")
    for field, lo in (("threads", 1), ("max_batch_size", 1), ("max_body_bytes", 64), ("window_seconds", 1),
                      ("max_category_bytes", 32)):
        if getattr(cfg, field) < lo:
            problems.append(f"--{field.replace('_', '-')} must be >= {lo}")
    for field in ("read_timeout_seconds", "idle_timeout_seconds"):
        if not getattr(cfg, field) > 0:
            problems.append(f"--{field.replace('_', '-')} must be > 0")
    if not 0.0 <= cfg.capture_rate <= 1.0:
        problems.append("--capture-rate must be between 0 and 1")
    if cfg.capture_rate > 0 and not cfg.capture_dir and not (cfg.capture_store and cfg.capture_service):
        problems.append("--capture-rate > 0 needs --capture-dir, or --capture-store and --capture-service")
    if cfg.capture_dir and cfg.capture_store:
        problems.append("--capture-dir and --capture-store are exclusive")
    if cfg.capture_max_rows < 1 or cfg.capture_chunk_rows < 1 or not cfg.capture_flush_seconds > 0:
        problems.append("--capture-max-rows and --capture-chunk-rows must be >= 1, --capture-flush-seconds > 0")
    if cfg.reservoir_size < 0:
        problems.append("--reservoir-size must be >= 0")
    if len(cfg.digest) != 64 or any(c not in "0123456789abcdef" for c in cfg.digest):
        problems.append("--digest must be a lowercase hex sha256 (64 characters)")
    if problems:
        p.error("; ".join(problems))
    return cfg
