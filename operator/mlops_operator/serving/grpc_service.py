"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), next to REST.

The same process, event loop, model and counters as the REST server (app.ModelServer): a
ModelInfer request becomes the document a REST request decodes to (protocol.parse_v2_doc checks
it, so an input is refused with the same message either way), joins the same dynamic batches
(batcher.py: REST and gRPC requests that arrive together share one model run), is counted for
drift by the same monitor, and in the same Prometheus series (metrics.py: `protocol="grpc"`, with
the HTTP status REST answers for the same outcome).

RPCs: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer. Any
other (Triton's statistics, KServe's repository extension) answers UNIMPLEMENTED. A recommender's
second model, `<name>-topk` (serving/topk.py), answers ModelReady, ModelMetadata and ModelInfer
as over REST: the same checks (topk.parse_doc), its pairs counted for drift, endpoint `topk`.

Contents: inputs either all in `raw_input_contents` (little-endian; BYTES length-prefixed, as
tritonclient sends them) or each in the typed `contents` field of its datatype (fp32_contents
for FP32, int64_contents for INT64, bytes_contents for BYTES, ...). Outputs come back in
`raw_output_contents` when the request sent raw inputs (tritonclient reads only those), or asks
for binary (request parameter `binary_data_output`, or an output's `binary_data`, as Triton's
HTTP extension); in typed `contents` otherwise (what kserve's client reads by default).

Errors carry the REST error's message under the gRPC code of its HTTP status (`GRPC_CODES`):
bad or unfitting input (400, 422) INVALID_ARGUMENT, an unknown model or version (404)
NOT_FOUND, too many rows (413) RESOURCE_EXHAUSTED, not serving (503) UNAVAILABLE, a bug (500)
INTERNAL. A message over `--max-body-bytes` (REST's body cap) is refused by gRPC itself with
RESOURCE_EXHAUSTED before it is read into memory. Requests are decoded in the handler, not by
gRPC, so that malformed protobuf is INVALID_ARGUMENT (and counted) rather than gRPC's INTERNAL.
ServerReady and ModelReady answer `ready: false` while the server drains, as Triton does, so a
client's `is_server_ready()` is False rather than an exception.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import grpc
import numpy as np
import orjson
from google.protobuf.message import DecodeError

from mlops_operator import __version__

from . import topk
from .protocol import ParsedRequest, ServingError, Spec, bad, binary_bytes, model_metadata, parse_v2_doc, \
    server_metadata
from .proto import grpc_predict_v2_pb2 as pb

if TYPE_CHECKING:  # app imports nothing from here; the server object is passed in
    from .app import ModelServer

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"

#: HTTP status of a ServingError -> the gRPC status code that says the same
GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND, 408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED, 501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

#: datatype -> the InferTensorContents field that carries it (FP16 has none: raw only)
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def grpc_code(status: int) -> grpc.StatusCode:
    return GRPC_CODES.get(status, grpc.StatusCode.INTERNAL if status >= 500 else grpc.StatusCode.UNKNOWN)


# ------------------------------------------------------------------------------------------------
# protobuf <-> the protocol's documents

def _param_value(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)


def _params(m: Any) -> dict[str, Any]:
    """A protobuf map<string, InferParameter> as a plain dict (what the JSON form holds)."""
    return {k: _param_value(v) for k, v in m.items()}


def _set_param(target: Any, key: str, v: Any) -> None:
    p = target[key]
    if type(v) is bool:
        p.bool_param = v
    elif type(v) is int:
        p.int64_param = v
    elif type(v) is float:
        p.double_param = v
    elif type(v) is str:
        p.string_param = v
    else:  # lists and objects (classes): as their JSON text
        p.string_param = orjson.dumps(v).decode()


#: the fields of an input tensor, by descriptor: one ListFields() call per input reads all that
#: are set (a protobuf attribute read costs about a microsecond; five per input add up)
_TENSOR = pb.ModelInferRequest.InferInputTensor.DESCRIPTOR
_NAME, _DATATYPE, _SHAPE, _PARAMETERS, _CONTENTS = (_TENSOR.fields_by_name[f] for f in (
    "name", "datatype", "shape", "parameters", "contents"))


def _typed_data(name: str, dt: str, contents: Any) -> list[Any]:
    """The values of one input given in `contents`, as the list a JSON request holds."""
    fields = contents.ListFields()
    if not fields:
        return []
    want = CONTENTS_FIELD.get(dt)
    field, values = fields[0]
    if len(fields) > 1 or field.name != want:
        got = ", ".join(f.name for f, _ in fields)
        if want is None:
            raise bad(f"input {name!r}: datatype {dt} has no typed contents field (send it in raw_input_contents), "
                      f"got {got}")
        raise bad(f"input {name!r}: datatype {dt} takes its values in contents.{want}, got {got}")
    if want != "bytes_contents":
        return values[:]
    out = []
    for i, b in enumerate(values):
        try:
            out.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            raise bad(f"input {name!r}: bytes_contents element {i} is not UTF-8 text") from None
    return out


def request_doc(msg: Any) -> tuple[dict[str, Any], memoryview | None]:
    """A ModelInferRequest -> (the document the JSON request would be, the raw bytes its inputs'
    `binary_data_size` index, or None): what protocol.parse_v2_doc checks for REST too."""
    inputs: list[dict[str, Any]] = []
    raw_parts = msg.raw_input_contents
    if raw_parts and len(raw_parts) != len(msg.inputs):
        raise bad(f"raw_input_contents has {len(raw_parts)} entries for {len(msg.inputs)} inputs: give one per "
                  "input, in the order of inputs, or none and each input's contents")
    for i, t in enumerate(msg.inputs):
        doc: dict[str, Any] = {"name": "", "datatype": "", "shape": []}
        params = contents = None
        for f, v in t.ListFields():
            if f is _NAME:
                doc["name"] = v
            elif f is _DATATYPE:
                doc["datatype"] = v
            elif f is _SHAPE:
                doc["shape"] = v[:]
            elif f is _CONTENTS:
                contents = v
            elif f is _PARAMETERS:
                params = _params(v)
        if raw_parts:
            if contents is not None:
                raise bad(f"input {doc['name']!r} has contents although the request has raw_input_contents: use "
                          "one or the other for all inputs")
            params = params or {}
            params["binary_data_size"] = len(raw_parts[i])
        else:
            doc["data"] = [] if contents is None else _typed_data(doc["name"], doc["datatype"], contents)
        if params is not None:
            doc["parameters"] = params
        inputs.append(doc)
    req: dict[str, Any] = {"inputs": inputs}
    if msg.id:
        req["id"] = msg.id
    if msg.parameters:
        req["parameters"] = _params(msg.parameters)
    if msg.outputs:
        req["outputs"] = [{"name": o.name, **({"parameters": _params(o.parameters)} if o.parameters else {})}
                          for o in msg.outputs]
    raw = memoryview(b"".join(raw_parts)) if raw_parts else None
    return req, raw


def infer_response(spec: Spec, req: ParsedRequest, result: dict[str, np.ndarray], msg: Any, raw: bool) -> Any:
    """The ModelInferResponse for a request's result: its outputs (all, or those requested) in
    raw_output_contents when `raw`, else in typed contents; id and parameters echoed."""
    resp = pb.ModelInferResponse(model_name=spec.name, model_version=spec.version, id=msg.id)
    for k, v in msg.parameters.items():
        resp.parameters[k].CopyFrom(v)
    for name in (req.outputs or spec.outputs):
        arr = result[name]
        dt = spec.output_datatypes[name]
        out = resp.outputs.add(name=name, datatype=dt, shape=arr.shape)
        if raw:
            resp.raw_output_contents.append(binary_bytes(arr))
        elif dt == "BYTES":
            out.contents.bytes_contents.extend(v if isinstance(v, bytes) else str(v).encode()
                                               for v in arr.ravel().tolist())
        else:
            getattr(out.contents, CONTENTS_FIELD[dt]).extend(arr.ravel().tolist())
    return resp


def topk_response(result: dict[str, np.ndarray], spec: Spec, msg: Any, raw: bool) -> Any:
    """The ModelInferResponse of `<name>-topk`: its three outputs, raw or typed as for infer."""
    doc = topk.response(result, spec.name, spec.version)
    resp = pb.ModelInferResponse(model_name=doc["model_name"], model_version=spec.version, id=msg.id)
    for k, v in msg.parameters.items():
        resp.parameters[k].CopyFrom(v)
    for o in doc["outputs"]:
        dt, data = o["datatype"], o["data"]
        out = resp.outputs.add(name=o["name"], datatype=dt, shape=o["shape"])
        if raw:
            arr = np.array(data, dtype=object if dt == "BYTES" else _NUMPY[dt])
            resp.raw_output_contents.append(binary_bytes(arr))
        elif dt == "BYTES":
            out.contents.bytes_contents.extend(v.encode() for v in data)
        else:
            getattr(out.contents, CONTENTS_FIELD[dt]).extend(data)
    return resp


_NUMPY = {"FP32": np.float32, "INT64": np.int64}


def metadata_response(spec: Spec) -> Any:
    return _metadata_pb(model_metadata(spec))


def _metadata_pb(doc: dict[str, Any]) -> Any:
    resp = pb.ModelMetadataResponse(name=doc["name"], versions=doc["versions"], platform=doc["platform"])
    for key in ("inputs", "outputs"):
        for t in doc[key]:
            m = getattr(resp, key).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
            for k, v in (t.get("parameters") or {}).items():
                _set_param(m.parameters, k, v)
    for k, v in doc["parameters"].items():
        _set_param(resp.parameters, k, v)
    return resp


# ------------------------------------------------------------------------------------------------
# the service

Handler = Callable[[bytes, Any], Awaitable[Any]]


class InferenceService:
    """The RPC handlers over one app.ModelServer. Each takes the undecoded request bytes (see the
    module docstring: malformed protobuf is the caller's error, not gRPC's INTERNAL)."""

    def __init__(self, server: "ModelServer"):
        self.server = server
        self.spec = server.spec
        #: the recommender's ranking model's name, None when the bundle has no ranking graph
        self.topk_name = server.spec.name + topk.SUFFIX if server.model.topk is not None else None

    def _check_topk(self, version: str) -> None:
        if version and version != self.spec.version:
            raise ServingError(404, f"no version {version!r} of {self.topk_name} here; this server serves version "
                                    f"{self.spec.version!r}")

    @staticmethod
    def _decode(cls: Any, data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as e:
            raise bad(f"request is not a valid {cls.DESCRIPTOR.name} protobuf message: {e}") from None

    async def _fail(self, context: Any, e: ServingError) -> None:
        await context.abort(grpc_code(e.status), e.message)

    async def server_live(self, data: bytes, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, data: bytes, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=bool(self.server.ready))

    async def server_metadata(self, data: bytes, context: Any) -> Any:
        doc = server_metadata(__version__)
        return pb.ServerMetadataResponse(name=doc["name"], version=doc["version"], extensions=doc["extensions"])

    async def model_ready(self, data: bytes, context: Any) -> Any:
        try:
            msg = self._decode(pb.ModelReadyRequest, data)
            if self.topk_name is not None and msg.name == self.topk_name:
                self._check_topk(msg.version)
            else:
                self.server.check_model(msg.name, msg.version or None)
        except ServingError as e:
            return await self._fail(context, e)
        return pb.ModelReadyResponse(ready=bool(self.server.ready))

    async def model_metadata(self, data: bytes, context: Any) -> Any:
        try:
            msg = self._decode(pb.ModelMetadataRequest, data)
            if self.topk_name is not None and msg.name == self.topk_name:
                self._check_topk(msg.version)
                assert self.server.model.topk is not None
                return _metadata_pb(topk.model_metadata(self.server.model.topk, self.spec.name, self.spec.version))
            self.server.check_model(msg.name, msg.version or None)
        except ServingError as e:
            return await self._fail(context, e)
        return metadata_response(self.spec)

    async def model_infer(self, data: bytes, context: Any) -> Any:
        """As app.ModelServer.infer, for protobuf: check, join a batch, answer, count."""
        t0 = time.perf_counter()
        server = self.server
        stats = server.requests
        stats.inflight += 1
        rows = 0
        status = 200
        endpoint = "infer"
        resp = failure = None
        try:
            msg = self._decode(pb.ModelInferRequest, data)
            if self.topk_name is not None and msg.model_name == self.topk_name:
                endpoint = "topk"
                rows, resp = self._topk(msg)
                return resp
            server.check_model(msg.model_name, msg.model_version or None)
            doc, raw = request_doc(msg)
            req = parse_v2_doc(doc, self.spec, raw)
            rows = req.n
            result = await server.batcher.submit(req)
            binary = raw is not None or req.binary_out is not None
            resp = infer_response(self.spec, req, result, msg, binary)
        except ServingError as e:
            status, failure = e.status, e
        except Exception as e:  # a bug, not bad input: INTERNAL, logged, the server goes on
            log.exception("gRPC ModelInfer failed")
            status, failure = 500, ServingError(500, f"internal error: {type(e).__name__}: {e}")
        finally:
            stats.inflight -= 1
            # a client that went away (asyncio.CancelledError) is 499, as for REST
            stats.done(endpoint, status if resp is not None or failure is not None else 499,
                       time.perf_counter() - t0, rows, "grpc")
        if failure is not None:
            await self._fail(context, failure)
        return resp

    def _topk(self, msg: Any) -> tuple[int, Any]:
        """ModelInfer on `<name>-topk`: (candidates, response). Runs inline, as over REST: one
        request is one graph run over its candidates, nothing to batch with."""
        self._check_topk(msg.model_version)
        model = self.server.model
        assert model.topk is not None
        doc, raw = request_doc(msg)
        feeds, n, _ = topk.parse_doc(doc, model.topk, raw)
        result = model.topk.run(feeds)
        self.server.monitor.observe_inputs(*topk.pair_inputs(model.features, feeds, n))
        binary = raw is not None or doc.get("parameters", {}).get("binary_data_output") is True
        return n, topk_response(result, self.spec, msg, binary)

    def handler(self) -> grpc.GenericRpcHandler:
        rpc = grpc.unary_unary_rpc_method_handler
        methods: dict[str, tuple[Handler, Any]] = {
            "ServerLive": (self.server_live, pb.ServerLiveResponse),
            "ServerReady": (self.server_ready, pb.ServerReadyResponse),
            "ModelReady": (self.model_ready, pb.ModelReadyResponse),
            "ServerMetadata": (self.server_metadata, pb.ServerMetadataResponse),
            "ModelMetadata": (self.model_metadata, pb.ModelMetadataResponse),
            "ModelInfer": (self.model_infer, pb.ModelInferResponse),
        }
        return grpc.method_handlers_generic_handler(SERVICE, {
            name: rpc(fn, request_deserializer=None, response_serializer=cls.SerializeToString)
            for name, (fn, cls) in methods.items()})


async def start(server: "ModelServer", host: str, port: int, max_message_bytes: int) -> tuple[Any, int]:
    """Start the gRPC server on the running event loop; (the grpc.aio server, the bound port).
    Raises OSError when the port cannot be bound (no silent sharing: SO_REUSEPORT is off)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),
    ]
    aio_server = grpc.aio.server(options=options)
    aio_server.add_generic_rpc_handlers((InferenceService(server).handler(),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = aio_server.add_insecure_port(address)
    except RuntimeError as e:
        raise OSError(f"cannot listen for gRPC on {address}: {e}") from None
    if not bound:
        raise OSError(f"cannot listen for gRPC on {address}")
    await aio_server.start()
    return aio_server, bound
