"""The model server that runs inside an InferenceService's Deployment.

onnxruntime behind aiohttp and grpc.aio, speaking the Open Inference Protocol (V2, REST and gRPC)
and KServe V1, with Prometheus metrics, drift statistics (per feature, the histogram or the
category counts the drift monitor judges, read through a cursor) and a feedback endpoint for
ground truth. Modules:

    config    flags / MLOPS_SERVE_* environment variables
    model     load + verify sha256 + ONNX only + tuned session + warm-up
    protocol  V2 / V1 request parsing and checks, responses, metadata
    tensors   raw columns -> checked arrays (fast batched path, careful per-request path)
    batcher   dynamic batching of concurrent requests into one model run
    monitor   feature histograms and counts, prediction counts, cursors
    feedback  ground truth -> accuracy / confusion / error sums
    metrics   request accounting and the Prometheus collector
    app       the aiohttp routes and the stats document
    grpc_service  the same protocol over gRPC (inference.GRPCInferenceService), same checks and batches
    proto     grpc_predict_v2.proto and its generated messages
    run       the command line and graceful shutdown

`main(argv) -> int` is the entry point (`python -m mlops_operator.serving`, `mlops serve`).
"""


def main(argv: list[str] | None = None) -> int:
    from .run import main as _main

    return _main(argv)


__all__ = ["main"]
