"""Hyperparameter search: grid or seeded random candidates from a declared space, each scored
by cross-validation on the training split, several in parallel, with an optional early stop.

Every trial is recorded (params, mean and std of the CV score, seconds, state), so a run's
status answers "what was tried" without a tracking server.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    score: float | None = None
    std: float | None = None
    seconds: float = 0.0
    state: str = "complete"
    error: str | None = None

    def wire(self) -> dict[str, Any]:
        d = {"number": self.number, "params": self.params, "seconds": round(self.seconds, 3), "state": self.state}
        if self.score is not None:
            d["score"], d["std"] = self.score, self.std
        return d


@dataclass
class SearchResult:
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    stopped_early: bool = False


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def grid(space: dict[str, dict[str, Any]], max_trials: int) -> list[dict[str, Any]]:
    names = sorted(space)
    values = [space[n]["choice"] for n in names]
    return [dict(zip(names, combo)) for combo in itertools.islice(itertools.product(*values), max_trials)]


def random_candidates(space: dict[str, dict[str, Any]], max_trials: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()
    # a space of only choices may hold fewer distinct points than max_trials: stop when exhausted
    finite = all("choice" in s for s in space.values())
    size = math.prod(len(s["choice"]) for s in space.values()) if finite else None
    attempts = 0
    while len(out) < max_trials and (size is None or len(seen) < size) and attempts < max_trials * 50:
        attempts += 1
        p: dict[str, Any] = {}
        for name in sorted(space):
            s = space[name]
            if "choice" in s:
                p[name] = _plain(s["choice"][int(rng.integers(len(s["choice"])))])
            elif "uniform" in s:
                p[name] = float(rng.uniform(s["uniform"]["low"], s["uniform"]["high"]))
            elif "loguniform" in s:
                lo, hi = math.log(s["loguniform"]["low"]), math.log(s["loguniform"]["high"])
                p[name] = float(math.exp(rng.uniform(lo, hi)))
            elif "int" in s:
                p[name] = int(rng.integers(int(math.ceil(s["int"]["low"])), int(math.floor(s["int"]["high"])) + 1))
        key = repr(sorted(p.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(p)
    return out


def candidates(tuning: dict[str, Any]) -> list[dict[str, Any]]:
    strategy = tuning.get("strategy", "none")
    space = tuning.get("space") or {}
    if strategy == "grid":
        return grid(space, int(tuning.get("maxTrials", 20)))
    if strategy == "random":
        return random_candidates(space, int(tuning.get("maxTrials", 20)), int(tuning.get("seed", 0)))
    return []


def _score(make: Callable[[dict[str, Any]], Any], params: dict[str, Any], x, y, cv, scoring: Any) -> tuple:
    t0 = time.perf_counter()
    try:
        scores = cross_val_score(make(params), x, y, cv=cv, scoring=scoring, n_jobs=1, error_score="raise")
        if not np.isfinite(scores).any():  # a ranking fold with no buyer at all has no score
            return None, None, time.perf_counter() - t0, "no fold could be scored"
        return float(np.nanmean(scores)), float(np.nanstd(scores)), time.perf_counter() - t0, None
    except Exception as e:  # a bad combination fails its trial, not the search
        return None, None, time.perf_counter() - t0, f"{type(e).__name__}: {e}"[:300]


def run_search(make: Callable[[dict[str, Any]], Any], x, y, tuning: dict[str, Any], scoring: Any,
               classification: bool, log: Callable[[str], None] = lambda s: None, cv: Any = None) -> SearchResult:
    """Score every candidate (higher is better: scikit-learn scorers are negated errors).

    ``cv``: the folds, when shuffled k-fold would be wrong (ranking: forward-chaining in time)."""
    cands = candidates(tuning)
    result = SearchResult()
    if not cands:
        return result
    folds = int(tuning.get("cvFolds", 3))
    seed = int(tuning.get("seed", 0))
    if cv is None:
        cv = (StratifiedKFold(folds, shuffle=True, random_state=seed) if classification
              else KFold(folds, shuffle=True, random_state=seed))
    parallel = max(1, int(tuning.get("parallelism", 1)))
    patience = tuning.get("earlyStopRounds")
    since_best = 0
    with Parallel(n_jobs=parallel, backend="loky" if parallel > 1 else "sequential") as pool:
        for start in range(0, len(cands), parallel):
            chunk = cands[start:start + parallel]
            outs = pool(delayed(_score)(make, p, x, y, cv, scoring) for p in chunk)
            for i, (p, (score, std, secs, err)) in enumerate(zip(chunk, outs)):
                t = Trial(start + i, p, score, std, secs, "failed" if err else "complete", err)
                result.trials.append(t)
                log(f"trial {t.number}: {p} -> {score if err is None else err}")
                if score is not None and (result.best is None or score > result.best.score):
                    result.best, since_best = t, 0
                else:
                    since_best += 1
            if patience and since_best >= int(patience) and start + parallel < len(cands):
                result.stopped_early = True
                for j, p in enumerate(cands[start + parallel:]):
                    result.trials.append(Trial(start + parallel + j, p, state="pruned"))
                log(f"early stop: {since_best} trials without improvement")
                break
    return result
