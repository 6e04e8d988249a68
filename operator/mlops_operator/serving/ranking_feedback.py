"""What customers bought after a recommendation: `POST /v2/models/{name}-topk/feedback`.

As with the classifier's feedback (feedback.py), the client sends back what it was served, so
any replica can take it and none has to remember its answers::

    {"id": "r1",                                  # optional, for the caller's logs
     "served": [["i7", "i2", "i9"], ["i4", ...]], # the top-k lists shown, best first
     "bought": ["i2", null]}                      # per list: the item bought next, or null

Counted, cumulative since the process started (the DriftMonitor takes differences per window,
merged across replicas, like every other counter of the stats document):

* ``rankCount``: lists followed by a purchase; lists with none (``null``) are counted apart
  (``rankNoPurchase``) and left out of the rates, as the trainer leaves out customers without a
  purchase in the test period (README, "Recommender metrics");
* ``hits``: purchases of an item in the first k of its list (k: the model's ``ranking.k``).
  An item bought that was not in the list is a miss;
* ``ndcgSum``: the sum of 1 / log2(position + 2) of the bought item within the first k (one
  relevant item per list, so the ideal DCG is 1): NDCG@k averaged over lists is
  ``ndcgSum / rankCount``, hit rate@k is ``hits / rankCount``.
"""

from __future__ import annotations

import math
from typing import Any

from .feedback import json_object
from .protocol import ServingError, bad, unfit

#: the longest list a feedback row may carry (the top-k request's candidate cap)
MAX_LIST = 10_000


class RankingFeedback:
    def __init__(self, k: int, max_rows: int):
        self.k = k
        self.max_rows = max_rows
        self.requests = 0
        self.count = 0  # lists followed by a purchase
        self.no_purchase = 0
        self.hits = 0
        self.ndcg_sum = 0.0

    def add(self, body: bytes) -> dict[str, Any]:
        """Validate and count one feedback body; the answer says what was counted."""
        doc = json_object(body, "ranking feedback must be a JSON object with \"served\" and \"bought\"")
        served, bought = doc.get("served"), doc.get("bought")
        if type(served) is not list or type(bought) is not list:
            raise unfit("ranking feedback needs \"served\" (the lists shown) and \"bought\" (per list: the item "
                        "bought, or null), arrays of the same length")
        if len(served) != len(bought):
            raise unfit(f"served has {len(served)} lists but bought has {len(bought)} values")
        if not served:
            raise unfit("feedback has no rows")
        if len(served) > self.max_rows:
            raise ServingError(413, f"feedback of {len(served)} rows is over the limit of {self.max_rows}")
        rid = doc.get("id")
        if rid is not None and type(rid) is not str:
            raise bad("id must be a string")
        for i, (lst, item) in enumerate(zip(served, bought)):
            if type(lst) is not list or not lst or len(lst) > MAX_LIST or not all(type(x) is str for x in lst):
                raise unfit(f"served[{i}] must be a non-empty list of item ids (strings), at most {MAX_LIST}")
            if item is not None and type(item) is not str:
                raise unfit(f"bought[{i}] must be an item id (a string) or null")
        hits, ndcg, count = 0, 0.0, 0
        for lst, item in zip(served, bought):
            if item is None:
                continue
            count += 1
            top = lst[: self.k]
            if item in top:
                hits += 1
                ndcg += 1.0 / math.log2(top.index(item) + 2)
        self.requests += 1
        self.count += count
        self.no_purchase += len(served) - count
        self.hits += hits
        self.ndcg_sum += ndcg
        answer: dict[str, Any] = {"rows": len(served), "purchases": count, "hits": hits}
        if rid is not None:
            answer["id"] = rid
        return answer

    def stats(self) -> dict[str, Any]:
        """The keys the stats document's feedback section carries for a recommender."""
        return {"rankK": self.k, "rankRequests": self.requests, "rankCount": self.count,
                "rankNoPurchase": self.no_purchase, "hits": self.hits, "ndcgSum": self.ndcg_sum}
