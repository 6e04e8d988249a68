"""Ground truth for earlier predictions: `POST /v2/models/{name}/feedback`.

The client sends the prediction it got back with the true label, so any replica can take it
(no replica has to remember what it answered)::

    {"id": "r1",                      # optional: the request id, for the caller's logs
     "predictions": ["1", 0, ...],    # what the server answered (class labels, or numbers)
     "labels": ["1", 1, ...],         # the truth, same length
     "scores": [0.83, 0.12, ...]}     # optional, binary classifiers: the positive-class score

Classification: labels and predictions are class labels as strings or integers matching the
model's classes (`GET /v2/models/{name}` lists them); counted are the rows, the correct ones
and a confusion matrix [true][predicted]; with `scores`, a histogram of the score per true
class on the edges 0.1 .. 0.9, from which a monitor can compute ROC AUC over a window.
Regression: numbers; counted are the rows and the sums of absolute and squared errors, of
the labels, of the squared labels and of the predictions (MAE, RMSE and R² over any window
follow from differences of these cumulative sums). Numbers beyond the float32 range (the
model's output type) are refused (422), which keeps every sum finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from .monitor import SCORE_EDGES
from .protocol import ServingError, _short, bad, unfit

F32_MAX = float(np.finfo(np.float32).max)


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """A feedback body's JSON object, or a 400 (`what` says what the object must hold)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise bad(f"request body is not valid JSON: {e}") from None
    if type(doc) is not dict:
        raise bad(what)
    return doc


class Feedback:
    def __init__(self, classifier: bool, classes: list[str], max_rows: int):
        self.classifier = classifier
        self.classes = list(classes)
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.max_rows = max_rows
        self.requests = 0
        self.count = 0
        self.correct = 0
        c = len(self.classes)
        self.confusion = np.zeros((c, c), dtype=np.int64)
        self.score_edges = np.array(SCORE_EDGES)
        self.score_counts = np.zeros((c, len(SCORE_EDGES) + 1), dtype=np.int64) if c == 2 else None
        self.sum_abs = 0.0
        self.sum_sq = 0.0
        self.sum_label = 0.0
        self.sum_label_sq = 0.0
        self.sum_pred = 0.0

    def _class(self, field: str, i: int, v: Any) -> int:
        t = type(v)
        if t is str:
            key = v
        elif t is int:
            key = str(v)
        elif t is float and v.is_integer():
            key = str(int(v))
        elif t is bool:
            key = str(int(v))
        else:
            raise unfit(f"{field}[{i}]: {_short(v)} is not a class label (a string or an integer)")
        idx = self.index.get(key)
        if idx is None:
            raise unfit(f"{field}[{i}]: unknown class {_short(v)}; the model's classes are {', '.join(self.classes)}")
        return idx

    @staticmethod
    def _numbers(field: str, values: list) -> np.ndarray:
        for i, v in enumerate(values):
            if type(v) not in (int, float):
                raise unfit(f"{field}[{i}]: {_short(v)} is not a number")
        a = np.array(values, dtype=np.float64)
        # the model answers float32: a number beyond that range is not a prediction or a label
        # it could be compared with, and it could overflow the sums to inf (stuck there, null in
        # the stats, until the pod restarts). Within it, a squared error is < 4.7e77, so the sums
        # stay finite for any number of rows a pod can ever count.
        out = ~(np.abs(a) <= F32_MAX)  # NaN too
        if out.any():
            i = int(np.argmax(out))
            raise unfit(f"{field}[{i}]: {values[i]!r} is outside the float32 range of the model's outputs")
        return a

    def add(self, body: bytes) -> dict[str, Any]:
        """Validate and count one feedback body; the answer says what was counted."""
        doc = json_object(body, "feedback must be a JSON object with \"predictions\" and \"labels\"")
        preds, labels = doc.get("predictions"), doc.get("labels")
        if type(preds) is not list or type(labels) is not list:
            raise unfit("feedback needs \"predictions\" and \"labels\": arrays of the same length")
        if len(preds) != len(labels):
            raise unfit(f"predictions has {len(preds)} values but labels has {len(labels)}")
        if not labels:
            raise unfit("feedback has no rows")
        if len(labels) > self.max_rows:
            raise ServingError(413, f"feedback of {len(labels)} rows is over the limit of {self.max_rows}")
        rid = doc.get("id")
        if rid is not None and type(rid) is not str:
            raise bad("id must be a string")
        if self.classifier:
            p = np.array([self._class("predictions", i, v) for i, v in enumerate(preds)], dtype=np.int64)
            t = np.array([self._class("labels", i, v) for i, v in enumerate(labels)], dtype=np.int64)
            scores = doc.get("scores")
            s = None
            if scores is not None:
                if self.score_counts is None:
                    raise unfit("scores are taken for binary classifiers only")
                if type(scores) is not list or len(scores) != len(labels):
                    raise unfit("scores must be an array as long as labels")
                s = self._numbers("scores", scores)
                if ((s < 0) | (s > 1)).any():
                    raise unfit("scores must be between 0 and 1")
            c = len(self.classes)
            self.confusion += np.bincount(t * c + p, minlength=c * c).reshape(c, c)
            ok = int((t == p).sum())
            self.correct += ok
            if s is not None and self.score_counts is not None:  # (scores: binary only, checked above)
                b = np.searchsorted(self.score_edges, s, side="right")
                k = self.score_counts.shape[1]
                self.score_counts += np.bincount(t * k + b, minlength=2 * k).reshape(2, k)
            answer: dict[str, Any] = {"rows": len(labels), "correct": ok}
        else:
            p = self._numbers("predictions", preds)
            t = self._numbers("labels", labels)
            err = p - t
            self.sum_abs += float(np.abs(err).sum())
            self.sum_sq += float((err * err).sum())
            self.sum_label += float(t.sum())
            self.sum_label_sq += float((t * t).sum())
            self.sum_pred += float(p.sum())
            answer = {"rows": len(labels), "absError": float(np.abs(err).sum())}
        self.count += len(labels)
        self.requests += 1
        if rid is not None:
            answer["id"] = rid
        return answer

    def stats(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"requests": self.requests, "count": self.count}
        if self.classifier:
            doc.update(correct=self.correct, classes=list(self.classes), confusion=self.confusion.tolist())
            if self.score_counts is not None:
                doc["scoreBinEdges"] = list(SCORE_EDGES)
                doc["scoreCountsByLabel"] = {c: row for c, row in zip(self.classes, self.score_counts.tolist())}
        else:
            doc.update(sumAbsError=self.sum_abs, sumSquaredError=self.sum_sq, sumLabel=self.sum_label,
                       sumSquaredLabel=self.sum_label_sq, sumPrediction=self.sum_pred)
        return doc
