"""Loading a model version: verified bytes, ONNX only, one tuned ONNX Runtime session, warmed up.

What is refused, each with an error that says why (the server then exits non-zero before it
listens, so the pod never becomes ready and the last good replicas keep serving):

* bytes whose sha256 is not the digest the server was given (and a manifest that names
  another digest);
* anything that is not a serialized ONNX ModelProto: pickles, joblib files, zip archives and
  other bytes are recognised and named; nothing that can execute code on load is ever read
  by anything but a protobuf wire-format reader;
* a model whose graph inputs/outputs do not match its `model.json`.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlops_operator.store.model_manifest import Feature, ModelManifest, ReferenceColumn, read_manifest
from mlops_operator.store.store import StoreError, open_store

log = logging.getLogger(__name__)

#: ONNX tensor element type of each manifest datatype.
_ORT_TYPES = {"FP32": "tensor(float)", "BYTES": "tensor(string)", "FP64": "tensor(double)", "INT64": "tensor(int64)"}


class ModelLoadError(RuntimeError):
    """The model version cannot be served; the message says why."""


def _sniff(data: bytes) -> str | None:
    """Name a well-known non-ONNX format from its first bytes, or None."""
    head = data[:16]
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return f"a Python pickle (protocol {head[1]})"
    if head[:1] in (b"(", b"]", b"}", b"c") and data.rstrip()[-1:] == b".":
        return "a Python pickle (protocol 0/1)"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (e.g. a joblib/PyTorch/Keras bundle)"
    if head[:2] in (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"):
        try:
            inner = zlib.decompressobj().decompress(data[:4096], 64)
        except zlib.error:
            inner = b""
        return "zlib-compressed data" + (" holding a Python pickle (a joblib file)" if inner[:1] == b"\x80" else "")
    if head[:2] == b"\x1f\x8b":
        return "gzip-compressed data"
    if head[:3] == b"BZh":
        return "bzip2-compressed data"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz-compressed data (e.g. a joblib file)"
    if head[:4] == b"\x89HDF":
        return "an HDF5 file"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON text"
    return None


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _wire_fields(buf: memoryview):
    """(field number, wire type, value) of one serialized protobuf message, framing checked.

    The value is the int of a varint, the bytes of a length-delimited field, None for fixed
    32/64-bit fields. Groups (wire types 3, 4: not used by ONNX) and bad framing raise.
    """
    i, n = 0, len(buf)
    value: int | memoryview | None
    while i < n:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise ValueError(f"field {number} runs past the end of the message")
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            i, value = i + (8 if wire == 1 else 4), None
            if i > n:
                raise ValueError(f"field {number} runs past the end of the message")
        else:
            raise ValueError(f"field {number} has wire type {wire}")
        yield number, wire, value


#: (field number, wire type) in onnx.proto: ModelProto.ir_version, .graph, .opset_import;
#: GraphProto.node, .output
_IR_VERSION, _GRAPH, _OPSET_IMPORT = (1, 0), (7, 2), (8, 2)
_NODE, _OUTPUT = (1, 2), (12, 2)


def parse_onnx(data: bytes, where: str = "model.onnx") -> dict[str, int]:
    """Check that bytes are a serialized ONNX ModelProto, refusing anything else with a clear error.

    Reads the protobuf wire format itself (the model server does not need the `onnx` package,
    ONNX Runtime parses the model fully next): the top-level and graph fields must be well
    framed, with an ir_version, an opset import, nodes and outputs. Returns those counts.
    """
    what = _sniff(data)
    if what is not None:
        raise ModelLoadError(f"{where} is {what}, not an ONNX model; the server loads ONNX only "
                             "(no pickle, joblib or other code-executing formats)")
    # a serialized ModelProto starts with field 1 (ir_version, varint): tag byte 0x08
    if not data or data[0] != 0x08:
        raise ModelLoadError(f"{where} does not start like a serialized ONNX ModelProto "
                             f"(first bytes {data[:8].hex() or 'empty'}); the server loads ONNX only")
    found = {"ir_version": 0, "opset_import": 0, "node": 0, "output": 0}
    try:
        for number, wire, value in _wire_fields(memoryview(data)):
            kind = (number, wire)
            if (number in (_IR_VERSION[0], _GRAPH[0], _OPSET_IMPORT[0])
                    and kind not in (_IR_VERSION, _GRAPH, _OPSET_IMPORT)):
                raise ValueError(f"field {number} has wire type {wire}")
            if kind == _IR_VERSION:
                found["ir_version"] = value
            elif kind == _OPSET_IMPORT:
                found["opset_import"] += 1
            elif kind == _GRAPH:
                for gnumber, gwire, _ in _wire_fields(value):
                    if (gnumber, gwire) == _NODE:
                        found["node"] += 1
                    elif (gnumber, gwire) == _OUTPUT:
                        found["output"] += 1
    except ValueError as e:
        raise ModelLoadError(f"{where} is not a valid ONNX ModelProto: {e}") from e
    if found["ir_version"] <= 0 or not found["opset_import"] or not found["node"] or not found["output"]:
        raise ModelLoadError(f"{where} parses as protobuf but is not a usable ONNX model "
                             f"(ir_version {found['ir_version']}, {found['node']} nodes)")
    return found


def session(onnx_bytes: bytes, threads: int = 1) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads == 1:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])


@dataclass
class LoadedModel:
    """A verified model version ready to answer: manifest, ONNX session, feature layout."""

    manifest: ModelManifest
    digest: str
    sess: Any
    onnx_bytes_len: int
    #: numeric and boolean features (fed as float32 [N, 1]), in manifest order
    num_features: list[Feature] = field(default_factory=list)
    #: categorical features (fed as string [N, 1]), in manifest order
    cat_features: list[Feature] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    #: a recommender's ranking graph (serving/topk.py), served as the model `<name>-topk`
    topk: Any = None

    @property
    def features(self) -> list[Feature]:
        return self.manifest.inputs

    @property
    def classifier(self) -> bool:
        return self.manifest.task == "classification"

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes or [])

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        names = outputs or self.output_names
        # InferenceSession.run re-checks the feed names in Python on every call; the checked
        # feeds built by the server always name every input, so call the C++ session directly
        run = self._run
        return dict(zip(names, run(names, feeds, None) if run is not None else self.sess.run(names, feeds)))

    @property
    def _run(self) -> Any:
        inner = getattr(self.sess, "_sess", None)
        return getattr(inner, "run", None)

    def example_feeds(self, rows: int = 1) -> dict[str, np.ndarray]:
        """Plausible inputs (reference medians / most frequent categories) for the warm-up."""
        ref = self.manifest.reference.columns if self.manifest.reference else {}
        feeds = {}
        for f in self.num_features:
            col: ReferenceColumn | None = ref.get(f.name)
            v = 0.0
            if col is not None and col.bin_edges:
                v = float(col.bin_edges[len(col.bin_edges) // 2])
            feeds[f.name] = np.full((rows, 1), v, dtype=np.float32)
        for f in self.cat_features:
            col = ref.get(f.name)
            c = next(iter(col.categories), "") if col is not None and col.categories else ""
            feeds[f.name] = np.array([c] * rows, dtype=object).reshape(-1, 1)
        return feeds

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 2, 32, 256)) -> None:
        for n in batch_sizes:
            for _ in range(3):
                self.run(self.example_feeds(n))


def check_against_manifest(m: ModelManifest, sess: Any) -> list[str]:
    """What disagrees between model.json and the ONNX graph (empty: they agree)."""
    problems = []
    graph_in = {i.name: i.type for i in sess.get_inputs()}
    declared = {f.name: f for f in m.inputs}
    for name in sorted(set(graph_in) - set(declared)):
        problems.append(f"graph input {name!r} is not in model.json")
    for name in sorted(set(declared) - set(graph_in)):
        problems.append(f"model.json input {name!r} is not a graph input")
    for name, f in declared.items():
        if name in graph_in and graph_in[name] != _ORT_TYPES[f.datatype]:
            problems.append(f"input {name!r}: model.json says {f.datatype}, the graph takes {graph_in[name]}")
        if f.type == "categorical" and f.datatype != "BYTES":
            problems.append(f"input {name!r}: a categorical feature must be BYTES")
        if f.type != "categorical" and f.datatype != "FP32":
            problems.append(f"input {name!r}: a {f.type} feature must be FP32")
    graph_out = {o.name for o in sess.get_outputs()}
    for o in m.outputs:
        if o.name not in graph_out:
            problems.append(f"model.json output {o.name!r} is not a graph output")
    if m.task == "classification":
        if "probabilities" not in graph_out or "label" not in graph_out:
            problems.append("a classifier must have outputs 'label' and 'probabilities' (no ZipMap)")
        elif not m.classes:
            problems.append("a classifier's model.json must list its classes")
        else:
            shape = next(o.shape for o in sess.get_outputs() if o.name == "probabilities")
            if len(shape) == 2 and isinstance(shape[1], int) and shape[1] != len(m.classes):
                problems.append(f"probabilities has {shape[1]} columns but model.json lists {len(m.classes)} classes")
    elif "variable" not in graph_out:
        problems.append("a regressor must have the output 'variable'")
    return problems


def from_bytes(onnx_bytes: bytes, manifest: ModelManifest, digest: str, threads: int = 1,
               where: str = "model.onnx") -> LoadedModel:
    got = hashlib.sha256(onnx_bytes).hexdigest()
    if got != digest:
        raise ModelLoadError(f"{where}: sha256 {got} does not match the expected {digest}; refusing to load it")
    if manifest.onnx_sha256 != digest:
        raise ModelLoadError(f"model.json describes model.onnx {manifest.onnx_sha256}, not {digest}; "
                             "refusing a manifest of another model")
    parse_onnx(onnx_bytes, where)
    try:
        sess = session(onnx_bytes, threads)
    except Exception as e:
        raise ModelLoadError(f"{where}: ONNX Runtime cannot load it: {e}") from e
    problems = check_against_manifest(manifest, sess)
    if problems:
        raise ModelLoadError(f"{where} does not match model.json: " + "; ".join(problems))
    outs = [o.name for o in sess.get_outputs()]
    wanted = ["label", "probabilities"] if manifest.task == "classification" else ["variable"]
    model = LoadedModel(
        manifest=manifest, digest=digest, sess=sess, onnx_bytes_len=len(onnx_bytes),
        num_features=[f for f in manifest.inputs if f.type != "categorical"],
        cat_features=[f for f in manifest.inputs if f.type == "categorical"],
        output_names=[n for n in wanted if n in outs],
    )
    try:
        model.warm_up()
    except Exception as e:
        raise ModelLoadError(f"{where}: the warm-up inference failed: {e}") from e
    return model


def load(store_uri: str, model_uri: str, digest: str, threads: int = 1) -> LoadedModel:
    """Load the version at `model_uri` from the store, verified against `digest`."""
    try:
        store = open_store(store_uri)
        onnx_path: Path = store.local_path(model_uri, "model.onnx", digest)
        manifest_path: Path = store.local_path(model_uri, "model.json")
    except StoreError as e:  # IntegrityError included
        raise ModelLoadError(str(e)) from e
    try:
        manifest = read_manifest(manifest_path)
    except Exception as e:  # ValueError, pydantic ValidationError
        raise ModelLoadError(f"{manifest_path}: {e}") from e
    data = onnx_path.read_bytes()  # hashed again in from_bytes: the bytes loaded are the bytes verified
    model = from_bytes(data, manifest, digest, threads, where=str(onnx_path))
    if manifest.ranking is not None:
        from . import topk

        name = manifest.ranking.topk_file
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ModelLoadError(f"model.json's ranking.topkFile {name!r} is not a file name in the bundle")
        try:
            path: Path = store.local_path(model_uri, name)
        except StoreError as e:
            raise ModelLoadError(str(e)) from e
        model.topk = topk.from_bytes(path.read_bytes(), manifest, where=str(path))
    return model
