"""Top-k serving of a recommender: the bundle's ranking graph as a second V2 model.

A ranking TrainingRun stores, beside the pointwise scorer (``model.onnx``, served as the model
``<name>`` like any classifier), one ONNX graph that scores a customer's candidates and keeps
the best k with a TopK node (``topk.onnx``, training/topk.py). The server loads it only after
checking its sha256 against model.json, and serves it as the model ``<name>-topk`` of the Open
Inference Protocol V2, so Triton's and KServe's V2 clients call it unchanged::

    POST /v2/models/<name>-topk/infer
    {"inputs": [
        {"name": "age", "datatype": "FP32", "shape": [1, 1], "data": [34]},         # context: once
        {"name": "category", "datatype": "BYTES", "shape": [3, 1], "data": [...]},  # per candidate
        {"name": "price", "datatype": "FP32", "shape": [3, 1], "data": [...]},
        {"name": "item_ids", "datatype": "BYTES", "shape": [3], "data": ["i1", "i2", "i3"]}],
     "parameters": {"k": 2}}
    -> {"model_name": "<name>-topk", "outputs": [topk_items (BYTES), topk_scores (FP32),
                                                 topk_indices (INT64)], best first}

``k`` comes from ``parameters.k`` or an INT64 input ``k`` (Triton clients send either), else
the run's ``ranking.k``. What a request may not do, each a 400 with a JSON message: no
candidates, more than :data:`MAX_CANDIDATES`, duplicate item ids (a ranked list names an item
once; which duplicate's features to score is not the server's guess), k below 1 or not an
integer, a context feature with more than one value, candidate tensors of different lengths,
a missing or unknown input. k above the number of candidates returns every candidate, ranked
(documented, as TopK does, rather than an error: a customer with few candidates still gets a
list). The server holds no catalogue: the client sends the candidates' features, so there is
no "unknown item" here. A top-k request's (customer, candidate) pairs are the scorer's inputs:
they are counted in the drift histograms like any other rows (not in the prediction histogram:
the graph returns only the k best scores), and the request in the metrics under endpoint
``topk``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..store.model_manifest import Feature, ModelManifest, RankingInfo
from .protocol import _binary, _loads, bad

_BINARY = {"BYTES", "FP32", "FP64", "INT64", "INT32", "BOOL"}

SUFFIX = "-topk"
ITEM_IDS, K = "item_ids", "k"
OUTPUTS = ("topk_items", "topk_scores", "topk_indices")
#: candidates per request: 1,000 is the benchmarked case; ten times that still answers in
#: milliseconds, and bounds the memory of one request
MAX_CANDIDATES = 10_000


@dataclass
class TopKModel:
    """The verified ranking graph and what its inputs are."""

    sess: Any
    info: RankingInfo
    context: list[Feature]
    candidates: list[Feature]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(OUTPUTS, self.sess.run(list(OUTPUTS), feeds)))


def from_bytes(data: bytes, manifest: ModelManifest, where: str = "topk.onnx") -> TopKModel:
    """Load a ranking graph whose bytes must hash to model.json's ``ranking.topkSha256``; its
    inputs must be the manifest's features plus item_ids and k (else the error says what)."""
    from .model import ModelLoadError, parse_onnx, session

    info = manifest.ranking
    if info is None:
        raise ModelLoadError("model.json has no ranking section: not a recommender")
    got = hashlib.sha256(data).hexdigest()
    if got != info.topk_sha256:
        raise ModelLoadError(f"{where}: sha256 {got} does not match model.json's {info.topk_sha256}; refusing it")
    parse_onnx(data, where)
    try:
        sess = session(data)
    except Exception as e:
        raise ModelLoadError(f"{where}: ONNX Runtime cannot load it: {e}") from e
    want = {f.name for f in manifest.inputs} | {ITEM_IDS, K}
    have = {i.name for i in sess.get_inputs()}
    if have != want or not set(OUTPUTS) <= {o.name for o in sess.get_outputs()}:
        raise ModelLoadError(f"{where}: inputs {sorted(have)} are not model.json's features + item_ids, k, or "
                             f"the outputs lack {', '.join(OUTPUTS)}")
    ctx = set(info.context_features)
    return TopKModel(sess, info, [f for f in manifest.inputs if f.name in ctx],
                     [f for f in manifest.inputs if f.name not in ctx])


def model_metadata(model: TopKModel, name: str, version: str) -> dict[str, Any]:
    """V2 model metadata of ``<name>-topk``: context inputs [1, 1], candidate inputs [-1, 1]."""
    def tensor(f: Feature, rows: int) -> dict[str, Any]:
        return {"name": f.name, "datatype": f.datatype, "shape": [rows, 1]}

    return {"name": name + SUFFIX, "versions": [version], "platform": "onnxruntime_onnx",
            "inputs": [tensor(f, 1) for f in model.context] + [tensor(f, -1) for f in model.candidates]
            + [{"name": ITEM_IDS, "datatype": "BYTES", "shape": [-1]}, {"name": K, "datatype": "INT64", "shape": [1]}],
            "outputs": [{"name": "topk_items", "datatype": "BYTES", "shape": [-1]},
                        {"name": "topk_scores", "datatype": "FP32", "shape": [-1]},
                        {"name": "topk_indices", "datatype": "INT64", "shape": [-1]}],
            "parameters": {"k": model.info.k, "contextFeatures": model.info.context_features}}


def _values(t: dict[str, Any]) -> list[Any]:
    """A tensor's values, flat: V2 allows flat data or one level of rows ([[v], [v], ...])."""
    data = t.get("data")
    if not isinstance(data, list):
        raise bad(f"input {t.get('name')!r}: \"data\" must be an array")
    flat: list[Any] = []
    for row in data:
        if isinstance(row, list):
            if any(isinstance(v, list) for v in row):
                raise bad(f"input {t.get('name')!r}: data nested deeper than rows of values")
            flat.extend(row)
        else:
            flat.append(row)
    return flat


def _column(f: Feature, values: list[Any]) -> np.ndarray:
    if f.type == "categorical":
        if not all(isinstance(v, str) for v in values):
            raise bad(f"input {f.name!r}: a categorical feature takes strings (datatype BYTES)")
        return np.array(values, dtype=object).reshape(-1, 1)
    if all(type(v) is float or type(v) is int for v in values):  # the usual case, checked with numpy
        try:
            a = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an integer beyond 64 bits: the loop below names it
            a = None
        if a is not None:
            nan = np.isnan(a)  # NaN: how Python's json module writes a missing value
            if nan.any() and not f.nullable:
                raise bad(f"input {f.name!r}: null is not allowed for this feature")
            big = ~nan & ~(np.abs(a) <= 3.4e38)
            if big.any():
                raise bad(f"input {f.name!r}: {values[int(np.argmax(big))]!r} is out of float32's range")
            return a.astype(np.float32).reshape(-1, 1)
    out = np.empty(len(values), dtype=np.float32)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):  # null, or NaN as Python's json writes it
            if not f.nullable:
                raise bad(f"input {f.name!r}: null is not allowed for this feature")
            out[i] = np.nan
        elif isinstance(v, bool) or isinstance(v, (int, float)):
            x = float(v)
            if not math.isfinite(x) or abs(x) > 3.4e38:
                raise bad(f"input {f.name!r}: {v!r} is out of float32's range")
            out[i] = x
        else:
            raise bad(f"input {f.name!r}: {v!r} is not a number")
    return out.reshape(-1, 1)


def _k(doc: dict[str, Any], values: dict[str, list[Any]], default: int) -> int:
    params = doc.get("parameters")
    k: Any = default
    if isinstance(params, dict) and K in params:
        k = params[K]
    elif K in values:
        vals = values[K]
        if len(vals) != 1:
            raise bad("input 'k' must hold one integer")
        k = vals[0]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise bad(f"k must be an integer of at least 1, got {k!r}")
    return k


def parse(body: bytes, model: TopKModel,
          header_length: str | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray], int, int]:
    """The request document and the graph's feeds from a V2 request body (JSON data, or the
    binary tensor extension tritonclient sends by default), with the number of candidates and
    k (k may exceed the candidates: the answer then ranks them all)."""
    raw: memoryview | None = None
    if header_length is not None:
        try:
            hl = int(header_length)
        except ValueError:
            raise bad(f"Inference-Header-Content-Length {header_length!r} is not an integer") from None
        if not 0 < hl <= len(body):
            raise bad(f"Inference-Header-Content-Length {hl} is outside the body of {len(body)} bytes")
        raw, body = memoryview(body)[hl:], body[:hl]
    doc = _loads(body)
    feeds, n, k = parse_doc(doc, model, raw)
    return doc, feeds, n, k


def parse_doc(doc: Any, model: TopKModel, raw: memoryview | None) -> tuple[dict[str, np.ndarray], int, int]:
    """The graph's feeds, the number of candidates and k from a request document whose inputs
    hold their values in ``data`` or, with ``parameters.binary_data_size``, in `raw` (REST's
    binary extension, or gRPC's raw_input_contents joined): one set of checks for both."""
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise bad("request must be a JSON object with \"inputs\": a non-empty array of tensors")
    values: dict[str, list[Any]] = {}
    offset = 0
    for t in doc["inputs"]:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise bad("each input must be an object with a name, datatype, shape and data")
        name = t["name"]
        if name in values:
            raise bad(f"input {name!r} is given twice")
        p = t.get("parameters")
        size = p.get("binary_data_size") if isinstance(p, dict) else None
        if size is None:
            values[name] = _values(t)
            continue
        shape = t.get("shape")
        if (raw is None or isinstance(size, bool) or not isinstance(size, int) or size < 0
                or offset + size > len(raw)):
            raise bad(f"input {name!r}: binary_data_size {size!r} does not fit the binary part of the body")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape) or t.get("datatype") not in _BINARY):
            raise bad(f"input {name!r}: binary data needs a shape of non-negative integers and a datatype of "
                      f"{', '.join(sorted(_BINARY))}")
        count = int(np.prod(shape)) if shape else 1
        values[name] = _binary(name, t["datatype"], raw[offset:offset + size], count).tolist()
        offset += size
    known = {f.name for f in model.context} | {f.name for f in model.candidates} | {ITEM_IDS, K}
    unknown = sorted(set(values) - known)
    if unknown:
        raise bad(f"unknown inputs: {', '.join(unknown[:10])}; this model takes {', '.join(sorted(known))}")
    missing = sorted(known - {K} - set(values))
    if missing:
        raise bad(f"missing inputs: {', '.join(missing)}")
    ids = values[ITEM_IDS]
    n = len(ids)
    if n == 0:
        raise bad("no candidates: item_ids is empty")
    if n > MAX_CANDIDATES:
        raise bad(f"{n} candidates; at most {MAX_CANDIDATES} per request")
    if not all(isinstance(i, str) and i for i in ids):
        raise bad("item_ids must be non-empty strings (datatype BYTES)")
    if len(set(ids)) != n:
        seen: set[str] = set()
        dup: set[str] = set()
        for i in ids:
            (dup if i in seen else seen).add(i)
        listed = sorted(dup)
        raise bad(f"duplicate candidate ids: {', '.join(listed[:5])}{' ...' if len(listed) > 5 else ''}; "
                  "list each item once")
    feeds: dict[str, np.ndarray] = {}
    for f in model.context:
        vals = values[f.name]
        if len(vals) != 1:
            raise bad(f"input {f.name!r} describes the customer: one value (shape [1, 1]), got {len(vals)}")
        feeds[f.name] = _column(f, vals)
    for f in model.candidates:
        vals = values[f.name]
        if len(vals) != n:
            raise bad(f"input {f.name!r} has {len(vals)} values for {n} candidates (item_ids)")
        feeds[f.name] = _column(f, vals)
    feeds[ITEM_IDS] = np.array(ids, dtype=object)
    k = _k(doc, values, model.info.k)
    feeds[K] = np.array([k], dtype=np.int64)
    return feeds, n, k


def pair_inputs(features: list[Feature], feeds: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, list[list[str]]]:
    """The request's (customer, candidate) pairs as the scorer's inputs, for the drift counts:
    numeric features as float64 [F_num, n] and categorical columns, in model.json's order, the
    customer's values repeated for every candidate."""
    nums = [f for f in features if f.type != "categorical"]
    cats = [f for f in features if f.type == "categorical"]
    x = np.empty((len(nums), n), dtype=np.float64)
    for i, f in enumerate(nums):
        x[i] = np.broadcast_to(feeds[f.name].reshape(-1).astype(np.float64), (n,))
    cols = []
    for f in cats:
        v = feeds[f.name].reshape(-1).tolist()
        cols.append(v * n if len(v) == 1 and n != 1 else v)
    return x, cols


def response(result: dict[str, np.ndarray], name: str, version: str, request_id: Any = None) -> dict[str, Any]:
    m = len(result["topk_items"])
    out = {"model_name": name + SUFFIX, "model_version": version, "outputs": [
        {"name": "topk_items", "datatype": "BYTES", "shape": [m], "data": [str(x) for x in result["topk_items"]]},
        {"name": "topk_scores", "datatype": "FP32", "shape": [m],
         "data": [float(x) for x in result["topk_scores"].reshape(-1)]},
        {"name": "topk_indices", "datatype": "INT64", "shape": [m],
         "data": [int(x) for x in result["topk_indices"].reshape(-1)]},
    ]}
    if isinstance(request_id, str):
        out["id"] = request_id
    return out
