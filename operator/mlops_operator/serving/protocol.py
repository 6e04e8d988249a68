"""Open Inference Protocol (V2) and KServe V1 requests and responses, checked against model.json.

Request forms accepted by `POST /v2/models/{name}[/versions/{v}]/infer`
------------------------------------------------------------------------

1. One tensor per feature (what `GET /v2/models/{name}` lists), in any order::

       {"id": "r1", "inputs": [
          {"name": "age", "datatype": "FP32", "shape": [2, 1], "data": [34, null]},
          {"name": "device", "datatype": "BYTES", "shape": [2], "data": ["mobile", "desktop"]}, ...]}

   Shape [N] or [N, 1]; `data` row-major, flat or nested. Numeric and boolean features take any
   numeric datatype (FP32, FP64, FP16, INT8..INT64, UINT8..UINT64, BOOL); values become float32,
   the graph's input type. Categorical features take BYTES (JSON strings). Booleans are
   true/false or 0/1.

2. One tensor of shape [N, F] holding all F features in the order of model.json (the order of
   the metadata's inputs), under any name that is not a feature name:

   * numeric datatype (FP32, FP64, INT64, ...): only for models without categorical features;
   * BYTES: for any model; categorical columns hold strings, numeric columns numbers or numeric
     strings ("3.5"; "" or null is a null).

Nulls: `null` (or NaN in binary data) in a feature whose model.json says `nullable: true` (the
default) is passed to the graph as NaN (numeric; the graph's imputer replaces it by the
training median) or "" (categorical; the one-hot encoder ignores it like an unknown
category); in a feature with `nullable: false` it is refused (422).

Triton's binary tensor extension is supported both ways (an `Inference-Header-Content-Length`
header, inputs with `parameters.binary_data_size`, outputs requested with
`parameters.binary_data: true` or request `parameters.binary_data_output: true`), so
tritonclient works with its defaults. The request `id` is echoed, request `parameters` are
passed back in the response's `parameters`, and `outputs` selects outputs.

Response outputs: classifiers `label` (INT64, or BYTES for string classes; shape [N]) and
`probabilities` (FP32 [N, C], columns in the order of `classes` in the metadata); regressors
`variable` (FP32 [N, 1]).

`POST /v1/models/{name}:predict` takes `{"instances": [{feature: value, ...}, ...]}` (or rows
as lists in model.json order) and answers `{"predictions": [...]}` plus, for classifiers,
`"probabilities": [[...], ...]` and `"classes": [...]`.

Errors: 400 for a body that is not JSON / not the protocol's shape (a lone surrogate escape
such as "\ud800", or binary BYTES that are not UTF-8, included), 404 unknown model or
version, 408 a body that did not arrive within `--read-timeout-seconds`, 413 body or batch
too large, 422 for tensors that do not fit the model (unknown or missing feature, wrong
datatype, shape, length, value type, null in a non-nullable feature, where "" is a null for a
categorical one); each as `{"error": "..."}` naming the problem.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import orjson

from .model import LoadedModel

NUMERIC_DATATYPES = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
_LE = {k: np.dtype(v).newbyteorder("<") for k, v in NUMERIC_DATATYPES.items()}
_NUMERIC_LIST = ", ".join(NUMERIC_DATATYPES)
JSON_HEADERS = {"Content-Type": "application/json"}
_DUMPS = orjson.dumps
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_OPT = orjson.OPT_SERIALIZE_NUMPY
#: input arrangements remembered per model (clients send the same one again and again)
_ARRANGEMENTS = 64


class ServingError(Exception):
    """A request the server will not answer: HTTP `status` with `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def bad(message: str) -> ServingError:
    return ServingError(400, message)


def unfit(message: str) -> ServingError:
    return ServingError(422, message)


def error_body(message: str) -> bytes:
    return _DUMPS({"error": message or "error"})


def _short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _clip(name: str, n: int = 60) -> str:
    """A client's name for something, cut short for an error message (never echo megabytes)."""
    return name if len(name) <= n else name[: n - 3] + "..."


class Spec:
    """What a request is checked against, precomputed from the model once."""

    def __init__(self, model: LoadedModel, name: str, version: str, max_rows: int):
        self.model = model
        self.name = name
        self.version = version
        self.max_rows = max_rows
        self.num = model.num_features
        self.cat = model.cat_features
        self.features = model.features
        self.n_features = len(self.features)
        self.index: dict[str, tuple[bool, int]] = {}
        for j, f in enumerate(self.num):
            self.index[f.name] = (False, j)
        for j, f in enumerate(self.cat):
            self.index[f.name] = (True, j)
        #: (feature name, datatype) -> (is_cat, j) for every datatype a feature takes
        self.accept: dict[tuple[str, str], tuple[bool, int]] = {}
        for feature, (is_cat, j) in self.index.items():
            for dt in (["BYTES"] if is_cat else list(NUMERIC_DATATYPES)):
                self.accept[feature, dt] = (is_cat, j)
        #: position of each manifest feature in (is_cat, j) terms, in manifest order
        self.order = [self.index[f.name] for f in self.features]
        self.outputs = list(model.output_names)
        self.output_set = set(self.outputs)
        self.classifier = model.classifier
        self.classes = model.classes
        self.string_labels = False
        if self.classifier:
            lab = next((o for o in model.manifest.outputs if o.name == "label"), None)
            graph_lab = next((o for o in model.sess.get_outputs() if o.name == "label"), None)
            self.string_labels = (lab is not None and lab.datatype == "BYTES") or (
                graph_lab is not None and graph_lab.type == "tensor(string)")
        self.output_datatypes = {"label": "BYTES" if self.string_labels else "INT64", "probabilities": "FP32",
                                 "variable": "FP32"}
        # the response parts that never change, pre-serialised
        self.resp_prefix = _DUMPS({"model_name": name, "model_version": version})[:-1]
        #: (input names, datatypes) in a request's order -> positions of the numeric and the
        #: categorical features in it; filled by the first request of each arrangement
        self.arrangements: dict[tuple[tuple, tuple], tuple[list[int], list[int]]] = {}

    def arrangement(self, key: tuple[tuple, tuple]) -> tuple[list[int], list[int]] | None:
        """Where each feature is among a request's inputs, when the names are every feature
        exactly once with a datatype it takes; else None (the checking path names the problem)."""
        hit = self.arrangements.get(key)
        if hit is not None:
            return hit
        names, dts = key
        num = [-1] * len(self.num)
        cat = [-1] * len(self.cat)
        for pos, (name, dt) in enumerate(zip(names, dts)):
            slot = self.accept.get((name, dt)) if type(name) is str and type(dt) is str else None
            if slot is None:
                return None
            is_cat, j = slot
            where = cat if is_cat else num
            if where[j] != -1:
                return None
            where[j] = pos
        if -1 in num or -1 in cat:
            return None
        if len(self.arrangements) < _ARRANGEMENTS:
            self.arrangements[key] = (num, cat)
        return num, cat


class ParsedRequest:
    """A validated request: columns of raw values (lists from JSON or arrays from binary data)."""

    __slots__ = ("id", "parameters", "n", "num", "cat", "outputs", "binary_out", "careful", "v1")

    def __init__(self) -> None:
        self.id: Any = None
        self.parameters: Any = None
        self.n = 0
        self.num: list[Any] = []
        self.cat: list[Any] = []
        self.outputs: list[str] | None = None
        self.binary_out: set[str] | None = None
        self.careful = False
        self.v1 = False


# --------------------------------------------------------------------------------------------
# V2 requests

def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        # Python's json module (and clients built on it, e.g. tritonclient) writes NaN and
        # Infinity as bare words, which strict JSON parsers refuse: accept those, nothing else
        try:
            doc = json.loads(body, parse_constant=_CONSTANTS.__getitem__)
        except (ValueError, KeyError, RecursionError):
            raise bad(f"request body is not valid JSON: {e}") from None
    # json.loads also takes what orjson refuses for good reasons, which would fail later when
    # the id or parameters are echoed or a category is counted (a 500): a lone surrogate
    # escape ("\ud800"), an integer beyond 64 bits, nesting past 255 levels. Only this rare
    # path pays for the check (one serialisation, in C).
    try:
        _DUMPS(doc)
    except TypeError as te:
        raise bad(f"request body is not valid JSON here: {te} (lone surrogate escapes, integers beyond "
                  "64 bits and nesting deeper than 255 levels are refused)") from None
    return doc


def _rows_of(name: str, shape: Any, spec: Spec, want_cols: int | None) -> int:
    if type(shape) is not list or not 1 <= len(shape) <= 2 or any(type(d) is not int or d < 0 for d in shape):
        raise unfit(f"input {name!r}: shape must be [N] or [N, 1] (non-negative integers), got {_short(shape)}")
    if want_cols is None:
        if len(shape) == 2 and shape[1] != 1:
            raise unfit(f"input {name!r}: shape {shape}: a feature tensor is [N] or [N, 1]")
    rows = shape[0]
    if rows > spec.max_rows:
        raise ServingError(413, f"batch of {rows} rows is over the limit of {spec.max_rows} rows per request")
    if rows == 0:
        raise unfit(f"input {name!r}: shape {shape} has no rows")
    return rows


def _flat(name: str, data: Any, count: int) -> list:
    if type(data) is not list:
        raise unfit(f"input {name!r}: data must be a JSON array, got {type(data).__name__}")
    if data and type(data[0]) is list:
        if not all(type(r) is list for r in data):
            raise unfit(f"input {name!r}: data mixes nested arrays and values")
        data = [v for r in data for v in r]
    if len(data) != count:
        raise unfit(f"input {name!r}: shape says {count} values but data has {len(data)}")
    return data


def _binary(name: str, dt: str, raw: memoryview, count: int) -> np.ndarray:
    if dt == "BYTES":
        out, off, end = [], 0, len(raw)
        try:
            for _ in range(count):
                (ln,) = struct.unpack_from("<I", raw, off)
                off += 4
                if off + ln > end:
                    raise ValueError
                out.append(bytes(raw[off:off + ln]).decode("utf-8"))
                off += ln
        except (struct.error, ValueError):
            raise bad(f"input {name!r}: binary BYTES data is truncated or not {count} length-prefixed "
                      "UTF-8 strings") from None
        if off != end:
            raise bad(f"input {name!r}: binary BYTES data has {end - off} bytes after {count} elements")
        return np.array(out, dtype=object)
    dtype = _LE[dt]
    if len(raw) != count * dtype.itemsize:
        raise bad(f"input {name!r}: binary_data_size {len(raw)} is not {count} x {dtype.itemsize} bytes of {dt}")
    return np.frombuffer(raw, dtype=dtype)


def _requested_outputs(doc: dict, spec: Spec, req: ParsedRequest, binary_all: bool) -> None:
    outs = doc.get("outputs")
    if outs is None:
        if binary_all:
            req.binary_out = set(spec.outputs)
        return
    if type(outs) is not list:
        raise bad("outputs must be an array of {\"name\": ...} objects")
    names, binary = [], set()
    for o in outs:
        if type(o) is not dict or type(o.get("name")) is not str:
            raise bad("each requested output must be an object with a string name")
        n = o["name"]
        if n not in spec.output_set:
            raise unfit(f"unknown output {_clip(n)!r}; this model has {', '.join(spec.outputs)}")
        if n not in names:
            names.append(n)
        p = o.get("parameters")
        if p is not None and type(p) is not dict:
            raise bad(f"output {n!r}: parameters must be an object")
        if (p and p.get("binary_data") is True) or (binary_all and not (p and p.get("binary_data") is False)):
            binary.add(n)
    req.outputs = names
    req.binary_out = binary or None


def parse_v2(body: bytes, spec: Spec, header_length: str | None = None) -> ParsedRequest:
    raw = None
    if header_length is not None:
        try:
            hl = int(header_length)
        except ValueError:
            raise bad(f"Inference-Header-Content-Length {header_length!r} is not an integer") from None
        if not 0 < hl <= len(body):
            raise bad(f"Inference-Header-Content-Length {hl} is outside the body of {len(body)} bytes")
        raw = memoryview(body)[hl:]
        body = body[:hl]
    return parse_v2_doc(_loads(body), spec, raw)


def parse_v2_doc(doc: Any, spec: Spec, raw: memoryview | None = None) -> ParsedRequest:
    """A V2 request already decoded (from JSON, or from protobuf by grpc_service.py) -> a checked
    request. `raw`: the binary tensor data that the inputs' `parameters.binary_data_size` index,
    in input order (REST's binary extension, gRPC's raw_input_contents). One path for both
    protocols, so an input is accepted or refused, with the same message, whichever it came by."""
    if raw is None and type(doc) is dict:
        req = _common_v2(doc, spec)
        if req is not None:
            return req
    if type(doc) is not dict:
        raise bad("request body must be a JSON object with \"inputs\"")
    inputs = doc.get("inputs")
    if type(inputs) is not list or not inputs:
        raise bad("request must have \"inputs\": a non-empty array of tensors")
    req = _request_fields(doc, spec)

    index = spec.index
    first = inputs[0]
    if (len(inputs) == 1 and type(first) is dict and type(first.get("name")) is str
            and first["name"] not in index and type(first.get("shape")) is list and len(first["shape"]) == 2):
        _single_tensor(first, spec, req, raw)
        return req

    num: list[Any] = [None] * len(spec.num)
    cat: list[Any] = [None] * len(spec.cat)
    n = -1
    first_name = ""
    offset = 0
    accept = spec.accept
    max_rows = spec.max_rows
    for t in inputs:
        if type(t) is not dict:
            raise bad("each input must be an object with name, datatype, shape and data")
        name: Any = t.get("name")  # str once found in accept
        dt: Any = t.get("datatype")
        try:
            is_cat, j = accept[name, dt]
        except (KeyError, TypeError):
            _refuse_input(t, spec)
            raise
        shape = t.get("shape")
        if type(shape) is list and (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            rows = shape[0]
            if type(rows) is not int or rows <= 0 or rows > max_rows:
                rows = _rows_of(name, shape, spec, None)
        else:
            rows = _rows_of(name, shape, spec, None)
        if n != rows:
            if n != -1:
                raise unfit(f"inputs disagree on the batch size: {name!r} has {rows} rows but {first_name!r} "
                            f"has {n}")
            n, first_name = rows, name
        data = t.get("data")
        if data is None:
            p = t.get("parameters")
            size = p.get("binary_data_size") if type(p) is dict else None
            if size is None:
                raise unfit(f"input {name!r} has no data")
            if raw is None or type(size) is not int or size < 0 or offset + size > len(raw):
                raise bad(f"input {name!r}: binary_data_size {_short(size)} does not fit the binary part of the body")
            # as the list JSON would give: the request can join the batched fast path (tensors.py),
            # which checks the values as it does for JSON (a tenth of the careful path's cost)
            data = _binary(name, dt, raw[offset:offset + size], rows).tolist()
            offset += size
        elif type(data) is not list or len(data) != rows or (rows and type(data[0]) is list):
            data = _flat(name, data, rows)
        if is_cat:
            if cat[j] is not None:
                raise unfit(f"input {name!r} is given twice")
            cat[j] = data
        else:
            if num[j] is not None:
                raise unfit(f"input {name!r} is given twice")
            num[j] = data
    if raw is not None and offset != len(raw):
        raise bad(f"{len(raw) - offset} bytes of binary data belong to no input")
    if len(inputs) != spec.n_features:
        missing = [f.name for f, (c, j) in zip(spec.features, spec.order) if (cat[j] if c else num[j]) is None]
        raise unfit(f"missing input(s): {', '.join(missing)}")
    req.n = n
    req.num = num
    req.cat = cat
    return req


def _request_fields(doc: dict, spec: Spec) -> ParsedRequest:
    """A request with the top-level fields checked: id, parameters, outputs."""
    req = ParsedRequest()
    rid = doc.get("id")
    if rid is not None:
        if type(rid) is not str:
            raise bad("id must be a string")
        req.id = rid
    params = doc.get("parameters")
    binary_all = False
    if params is not None:
        if type(params) is not dict:
            raise bad("parameters must be an object")
        try:  # serialised now, once: echoed as is in the response, and refused here if it cannot be
            req.parameters = orjson.Fragment(_DUMPS(params))
        except TypeError as te:  # nesting deeper than the writer goes (255 levels), say
            raise bad(f"parameters cannot be echoed back: {te}") from None
        binary_all = params.get("binary_data_output") is True
    if binary_all or "outputs" in doc:
        _requested_outputs(doc, spec, req, binary_all)
    return req


def _common_v2(doc: dict, spec: Spec) -> ParsedRequest | None:
    """The request nearly every client sends, checked in a few passes over its inputs: one JSON
    tensor per feature, every feature once, all of the same shape [N] or [N, 1], `data` flat.
    Anything else (a missing or unknown input, a nested or binary tensor, one [N, F] tensor, a
    disagreeing shape) returns None and goes through the checking path below, which accepts
    the other forms and names what is wrong. Values are checked later, per batch (tensors.py)."""
    inputs = doc.get("inputs")
    if type(inputs) is not list or len(inputs) != spec.n_features:
        return None
    try:
        where = spec.arrangement((tuple([t["name"] for t in inputs]), tuple([t["datatype"] for t in inputs])))
        shapes = [t["shape"] for t in inputs]
        datas = [t["data"] for t in inputs]
    except (TypeError, KeyError):  # an input that is not an object, lacks a field, or has an unhashable name
        return None
    if where is None:
        return None
    s0 = shapes[0]
    if type(s0) is not list or shapes.count(s0) != len(shapes):
        return None
    n = s0[0] if s0 else None
    if type(n) is not int or not 0 < n <= spec.max_rows or not (len(s0) == 1 or (len(s0) == 2 and s0[1] == 1)):
        return None
    for d in datas:
        if type(d) is not list or len(d) != n or type(d[0]) is list:
            return None
    req = _request_fields(doc, spec)
    req.n = n
    num, cat = where
    req.num = [datas[p] for p in num]
    req.cat = [datas[p] for p in cat]
    return req


def _refuse_input(t: dict, spec: Spec) -> None:
    """Raise the error that says why `t` is not one of the model's feature tensors."""
    name, dt = t.get("name"), t.get("datatype")
    if type(name) is not str:
        raise bad("each input needs a string name")
    slot = spec.index.get(name)
    if slot is None:
        raise unfit(f"unknown input {_clip(name)!r}: this model's inputs are {', '.join(f.name for f in spec.features)}"
                    + (f" (or one [N, {spec.n_features}] tensor)" if spec.n_features > 1 else ""))
    is_cat, j = slot
    if is_cat:
        raise unfit(f"input {name!r} is categorical: datatype must be BYTES, got {_short(dt)}")
    raise unfit(f"input {name!r} is {spec.num[j].type}: datatype must be one of {_NUMERIC_LIST}, got {_short(dt)}")


def _bytes_numeric(name: str, col: list) -> np.ndarray:
    out = np.empty(len(col), dtype=np.float64)
    for i, v in enumerate(col):
        if v is None or v == "":
            out[i] = np.nan
        elif type(v) is bool:
            out[i] = float(v)
        elif type(v) in (int, float):
            out[i] = v
        elif type(v) is str:
            try:
                out[i] = float(v)
            except ValueError:
                raise unfit(f"feature {name!r}: row {i}: {_short(v)} is not a number") from None
        else:
            raise unfit(f"feature {name!r}: row {i}: {type(v).__name__} is not a number")
    return out


def _single_tensor(t: dict, spec: Spec, req: ParsedRequest, raw: memoryview | None) -> None:
    name, dt, shape = t.get("name"), t.get("datatype"), t["shape"]
    f = spec.n_features
    if type(name) is not str:
        raise bad("each input needs a string name")
    name = _clip(name)  # used in messages only
    if (any(type(d) is not int or d < 0 for d in shape)) or shape[1] != f:
        raise unfit(f"input {name!r} is not a feature of this model, nor a [N, {f}] tensor of all features "
                    f"(shape {_short(shape)}); inputs are {', '.join(x.name for x in spec.features)}")
    rows = _rows_of(name, [shape[0]], spec, f)
    if type(dt) is str and dt in NUMERIC_DATATYPES:
        if spec.cat:
            raise unfit(f"input {name!r}: a {dt} [N, {f}] tensor can only hold numeric features, and this model "
                        f"has categorical ones ({', '.join(c.name for c in spec.cat)}): send a BYTES [N, {f}] "
                        "tensor or one tensor per feature")
    elif dt != "BYTES":
        raise unfit(f"input {name!r}: datatype must be BYTES or one of {_NUMERIC_LIST}, got {_short(dt)}")
    data = t.get("data")
    if data is None:
        p = t.get("parameters")
        size = p.get("binary_data_size") if type(p) is dict else None
        if raw is None or type(size) is not int or size != len(raw):
            raise unfit(f"input {name!r} has no data" if size is None else
                        f"input {name!r}: binary_data_size {_short(size)} does not match the binary part of the body")
        arr = _binary(name, dt, raw, rows * f).reshape(rows, f)
        cols: list[Any] = [arr[:, j] for j in range(f)]
        req.careful = True
    else:
        if type(data) is not list:
            raise unfit(f"input {name!r}: data must be a JSON array")
        if data and type(data[0]) is list:
            if len(data) != rows or not all(type(r) is list and len(r) == f for r in data):
                raise unfit(f"input {name!r}: nested data must be {rows} rows of {f} values")
            cols = [list(c) for c in zip(*data)]
        else:
            if len(data) != rows * f:
                raise unfit(f"input {name!r}: shape {shape} says {rows * f} values but data has {len(data)}")
            cols = [data[j::f] for j in range(f)]
    num: list[Any] = [None] * len(spec.num)
    cat: list[Any] = [None] * len(spec.cat)
    for (is_cat, j), feat, col in zip(spec.order, spec.features, cols):
        if is_cat:
            cat[j] = col
        elif dt == "BYTES":
            num[j] = _bytes_numeric(feat.name, col.tolist() if isinstance(col, np.ndarray) else col)
            req.careful = True
        else:
            num[j] = col
    req.n = rows
    req.num = num
    req.cat = cat


# --------------------------------------------------------------------------------------------
# V1 requests

def parse_v1(body: bytes, spec: Spec) -> ParsedRequest:
    doc = _loads(body)
    if type(doc) is not dict:
        raise bad("request body must be a JSON object with \"instances\"")
    inst = doc.get("instances", doc.get("inputs"))
    if type(inst) is not list or not inst:
        raise bad("request must have \"instances\": a non-empty array of rows")
    n = len(inst)
    if n > spec.max_rows:
        raise ServingError(413, f"batch of {n} rows is over the limit of {spec.max_rows} rows per request")
    names = [f.name for f in spec.features]
    f = len(names)
    if type(inst[0]) is dict:
        known = set(names)
        cols: list[list] = [[None] * n for _ in range(f)]
        for i, row in enumerate(inst):
            if type(row) is not dict:
                raise bad(f"instance {i} is not an object like the others")
            if len(row) != f or not known.issuperset(row):
                unknown = sorted(set(row) - known)
                if unknown:
                    raise unfit(f"instance {i}: unknown feature(s) {', '.join(map(repr, unknown))}; this model's "
                                f"features are {', '.join(names)}")
                raise unfit(f"instance {i}: missing feature(s) {', '.join(k for k in names if k not in row)}")
            for j, k in enumerate(names):
                cols[j][i] = row[k]
    elif type(inst[0]) is list:
        for i, row in enumerate(inst):
            if type(row) is not list or len(row) != f:
                raise unfit(f"instance {i}: a row given as an array must hold the {f} features in the order "
                            f"{', '.join(names)}")
        cols = [list(c) for c in zip(*inst)]
    else:
        raise bad("instances must be objects {feature: value} or arrays of the feature values")
    req = ParsedRequest()
    req.v1 = True
    req.n = n
    req.num = [None] * len(spec.num)
    req.cat = [None] * len(spec.cat)
    for (is_cat, j), col in zip(spec.order, cols):
        if is_cat:
            req.cat[j] = col
        else:
            req.num[j] = col
    return req


# --------------------------------------------------------------------------------------------
# responses

def binary_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype == object:
        parts = []
        for v in arr.ravel().tolist():
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(arr).tobytes()


def v2_response(spec: Spec, req: ParsedRequest, result: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    outputs = []
    binary = req.binary_out
    blobs = []
    for name in (req.outputs or spec.outputs):
        arr = result[name]
        if binary and name in binary:
            blob = binary_bytes(arr)
            blobs.append(blob)
            outputs.append({"name": name, "datatype": spec.output_datatypes[name], "shape": list(arr.shape),
                            "parameters": {"binary_data_size": len(blob)}})
        else:
            outputs.append({"name": name, "datatype": spec.output_datatypes[name], "shape": list(arr.shape),
                            "data": arr.ravel() if arr.dtype != object else arr.ravel().tolist()})
    doc: dict[str, Any] = {"outputs": outputs}
    if req.id is not None:
        doc["id"] = req.id
    if req.parameters is not None:
        doc["parameters"] = req.parameters
    body = spec.resp_prefix + b"," + _DUMPS(doc, option=_OPT)[1:]
    if not blobs:
        return body, JSON_HEADERS
    return body + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(body))}


def v1_response(spec: Spec, result: dict[str, np.ndarray]) -> bytes:
    if spec.classifier:
        label = result["label"]
        return _DUMPS({"predictions": label.tolist() if label.dtype == object else label,
                       "probabilities": result["probabilities"], "classes": spec.classes}, option=_OPT)
    return _DUMPS({"predictions": result["variable"].ravel()}, option=_OPT)


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "mlops-serving", "version": version, "extensions": ["binary_tensor_data", "parameters"]}


def model_metadata(spec: Spec) -> dict[str, Any]:
    m = spec.model.manifest
    outs = []
    for name in spec.outputs:
        shape = [-1, len(spec.classes)] if name == "probabilities" else ([-1] if name == "label" else [-1, 1])
        outs.append({"name": name, "datatype": spec.output_datatypes[name], "shape": shape})
    params: dict[str, Any] = {"task": m.task, "estimator": m.estimator, "target": m.target,
                              "onnx_sha256": spec.model.digest}
    if spec.classifier:
        params["classes"] = spec.classes
    return {
        "name": spec.name, "versions": [spec.version], "platform": "onnx",
        "inputs": [{"name": f.name, "datatype": f.datatype, "shape": [-1, 1],
                    "parameters": {"feature_type": f.type, "nullable": f.nullable}} for f in spec.features],
        "outputs": outs, "parameters": params,
    }
