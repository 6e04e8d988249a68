"""One ONNX graph that ranks candidates: the pointwise scorer plus a TopK node.

Inputs:

* one tensor per *context* feature (the customer: age, segment, ...), shape [1, 1], given once
  per request and broadcast over the candidates inside the graph (Expand);
* one tensor per *candidate* feature (the item and the pair: category, price, ...), shape
  [N, 1], one row per candidate, named as in the scorer;
* ``item_ids`` (string, [N]): the candidates' ids, returned for the winners;
* ``k`` (int64, [1]): how many to return; more than N returns all N (the graph takes
  min(k, N), so a short candidate list is not an error here: the server decides what a
  request may ask).

Outputs: ``topk_items`` (string, [min(k, N)]), ``topk_scores`` (float, best first) and
``topk_indices`` (int64 positions in the candidate list). Equal scores keep candidate order
(ONNX TopK returns the lower index first), so a caller that lists candidates by item id gets
the trainer's tie-break (training.ranking_metrics).

The scorer is the skl2onnx graph the trainer already exported and parity-checked; this
module only rewires it, so the ranking graph computes exactly the scores the model server
serves for single pairs. `check_parity` compares its top k with scikit-learn's ranking of
the same candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper

from . import convert

ITEM_IDS, K = "item_ids", "k"
OUTPUTS = ("topk_items", "topk_scores", "topk_indices")
_P = "topk__"  # prefix of the tensors this module adds (never a feature name: features have no "__")


def build(scorer_bytes: bytes, features: list[dict[str, Any]], context: list[str],
          classifier: bool, positive_index: int = 1) -> bytes:
    """The ranking graph around ``scorer_bytes`` (an exported pointwise model).

    ``context``: names of the features given once per request; every other feature is per
    candidate. ``positive_index``: column of the positive class in ``probabilities``."""
    model = onnx.load_from_string(scorer_bytes)
    g = model.graph
    names = [c["name"] for c in features]
    unknown = sorted(set(context) - set(names))
    if unknown:
        raise ValueError(f"context features not among the model's inputs: {', '.join(unknown)}")
    if any("__" in n for n in names):
        raise ValueError("feature names may not contain '__' in a ranking graph")
    by_name = {i.name: i for i in g.input}
    pre: list[onnx.NodeProto] = []  # before the scorer: broadcast the context
    post: list[onnx.NodeProto] = []  # after it: pick the score, TopK, the ids
    g.initializer.append(helper.make_tensor(_P + "one", TensorProto.INT64, [1], [1]))
    g.initializer.append(helper.make_tensor(_P + "pos", TensorProto.INT64, [], [positive_index]) if classifier
                         else helper.make_tensor(_P + "flat", TensorProto.INT64, [1], [-1]))
    # N from the ids: [N] -> shape [1] ; target shape of a broadcast context feature: [N, 1]
    pre.append(helper.make_node("Shape", [ITEM_IDS], [_P + "n"]))
    pre.append(helper.make_node("Concat", [_P + "n", _P + "one"], [_P + "n_by_1"], axis=0))
    for name in context:
        expanded = _P + name
        for node in g.node:
            for j, inp in enumerate(node.input):
                if inp == name:
                    node.input[j] = expanded
        pre.append(helper.make_node("Expand", [name, _P + "n_by_1"], [expanded]))
        elem = by_name[name].type.tensor_type.elem_type
        g.input.remove(by_name[name])
        g.input.append(helper.make_tensor_value_info(name, elem, [1, 1]))
    outs = {o.name for o in g.output}
    if classifier:
        if "probabilities" not in outs:
            raise ValueError("the scorer has no probabilities output")
        post.append(helper.make_node("Gather", ["probabilities", _P + "pos"], [_P + "scores"], axis=1))
    else:
        post.append(helper.make_node("Reshape", [g.output[0].name, _P + "flat"], [_P + "scores"]))
    post.append(helper.make_node("Min", [K, _P + "n"], [_P + "k"]))
    post.append(helper.make_node("TopK", [_P + "scores", _P + "k"], ["topk_scores", "topk_indices"],
                                  axis=0, largest=1, sorted=1))
    post.append(helper.make_node("Gather", [ITEM_IDS, "topk_indices"], ["topk_items"], axis=0))
    scorer_nodes = list(g.node)
    del g.node[:]
    g.node.extend(pre + scorer_nodes + post)
    g.input.append(helper.make_tensor_value_info(ITEM_IDS, TensorProto.STRING, ["N"]))
    g.input.append(helper.make_tensor_value_info(K, TensorProto.INT64, [1]))
    score_type = TensorProto.FLOAT
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("topk_items", TensorProto.STRING, ["K"]),
                     helper.make_tensor_value_info("topk_scores", score_type, ["K"]),
                     helper.make_tensor_value_info("topk_indices", TensorProto.INT64, ["K"])])
    onnx.checker.check_model(model)
    return convert.canonical(model).SerializeToString()


def feeds(context_row: pd.DataFrame, candidates: pd.DataFrame, item_ids: list[str], k: int,
          features: list[dict[str, Any]], context: list[str]) -> dict[str, np.ndarray]:
    """Inputs of the ranking graph for one customer (frames as pipeline.prepare_frame makes them)."""
    ctx = [c for c in features if c["name"] in context]
    cand = [c for c in features if c["name"] not in context]
    out = convert.feeds(context_row.iloc[:1], ctx) if ctx else {}
    out.update(convert.feeds(candidates, cand) if cand else {})
    out[ITEM_IDS] = np.asarray(item_ids, dtype=object)
    out[K] = np.array([k], dtype=np.int64)
    return out


def sklearn_scores(model: Any, frame: pd.DataFrame, classifier: bool, positive_index: int = 1) -> np.ndarray:
    """The pointwise score scikit-learn gives each row: P(positive) or the regression output."""
    if classifier:
        return np.asarray(model.predict_proba(frame))[:, positive_index]
    return np.asarray(model.predict(frame), dtype=float).reshape(-1)


def sklearn_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best scores, best first, ties by position (what TopK promises)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=float)))
    return order[:k]


@dataclass
class TopKParity:
    groups: int
    rank_mismatches: int
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.rank_mismatches == 0 and self.max_abs_diff <= self.tolerance


def check_parity(model: Any, topk_bytes: bytes, frame: pd.DataFrame, groups: np.ndarray, items: np.ndarray,
                 features: list[dict[str, Any]], context: list[str], classifier: bool, k: int, tolerance: float,
                 max_groups: int = 50, positive_index: int = 1) -> TopKParity:
    """ONNX top k vs scikit-learn's ranking on up to ``max_groups`` groups of ``frame``.

    Each group's context features are taken from its first row and broadcast, as a request
    gives them; its candidates are its distinct items. A position counts as a mismatch only
    if scikit-learn's scores of the two items there differ by more than ``tolerance`` (float32
    vs float64 may order near-ties either way)."""
    sess = convert.session(topk_bytes)
    g = np.asarray(groups).astype(str)
    it = np.asarray(items).astype(str)
    mismatches, diff, seen = 0, 0.0, 0
    for key in sorted(set(g.tolist()))[:max_groups]:
        rows = np.flatnonzero(g == key)
        _, first = np.unique(it[rows], return_index=True)
        rows = rows[np.sort(first)]
        cand = frame.iloc[rows].reset_index(drop=True)
        for c in context:
            cand[c] = cand[c].iloc[0]
        want_scores = sklearn_scores(model, cand, classifier, positive_index)
        want = sklearn_topk(want_scores, k)
        got_items, got_scores, got_idx = sess.run(list(OUTPUTS), feeds(cand, cand, it[rows].tolist(), k, features,
                                                                        context))
        if len(got_idx) != len(want) or list(got_items) != [it[rows][i] for i in got_idx]:
            mismatches += 1
            continue
        diff = max(diff, float(np.max(np.abs(got_scores - want_scores[got_idx]))) if len(want) else 0.0)
        differ = got_idx != want
        mismatches += int(np.sum(np.abs(want_scores[got_idx[differ]] - want_scores[want[differ]]) > tolerance))
        seen += 1
    return TopKParity(seen, mismatches, diff, tolerance)
