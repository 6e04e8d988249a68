"""The promotion decision of a TrainingRun's policy: move the alias to the new version or not,
and say why in words an admin reads in an Event."""

from __future__ import annotations

from typing import Any

#: metrics where a smaller value is better (the trainer's names; see training.evaluate)
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


def better(metric: str, candidate: float, champion: float, margin: float) -> bool:
    if metric in LOWER_IS_BETTER:
        return candidate < champion and champion - candidate >= margin
    return candidate > champion and candidate - champion >= margin


def baseline_refusal(gate: dict[str, Any]) -> str | None:
    """Why a recommender may not be promoted past the popularity baseline, or None if it beats it.

    `gate` is the trainer's report: metric, margin, candidate, baseline (the same test rows).
    A missing score refuses: a gate that cannot be checked must not open."""
    metric, margin = str(gate.get("metric")), float(gate.get("margin") or 0.0)
    cand, base = gate.get("candidate"), gate.get("baseline")
    if cand is None or base is None:
        return f"no {metric} to compare with the popularity baseline (no buyer in the test period?)"
    if better(metric, float(cand), float(base), margin):
        return None
    return (f"{metric} {float(cand):.4f} does not beat the popularity baseline's {float(base):.4f} by {margin:g}: "
            "a recommender must rank better than the most bought items")


def decide(policy: str, alias: str, metric: str, margin: float, candidate_score: float | None,
           champion: dict[str, Any] | None, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """A PromotionResult (wire form). `champion` is the trainer's report: name, score or reason.

    `baseline` (ranking with promotion.requireBaseline): the gate every policy but none must
    pass first, the trainer's comparison with the popularity baseline."""
    out: dict[str, Any] = {"alias": alias, "candidateScore": candidate_score}
    if champion:
        out["champion"] = champion.get("name")
        if champion.get("score") is not None:
            out["championScore"] = champion["score"]
    if policy == "none":
        return {**out, "decision": "skipped", "reason": "promotion policy is none"}
    if baseline is not None:
        refused = baseline_refusal(baseline)
        if refused:
            return {**out, "decision": "kept", "reason": refused}
        result = decide(policy, alias, metric, margin, candidate_score, champion)
        if result["decision"] == "promoted":
            result["reason"] += (f"; beats the popularity baseline's {baseline['metric']} "
                                 f"{float(baseline['baseline']):.4f}")
        return result
    if policy == "always":
        return {**out, "decision": "promoted", "reason": "promotion policy is always"}
    if not champion:
        return {**out, "decision": "promoted", "reason": f"no version holds {alias} yet"}
    if champion.get("score") is None:
        return {**out, "decision": "promoted",
                "reason": f"champion {champion.get('name')} could not be scored: {champion.get('reason', '?')}"}
    if candidate_score is None:
        return {**out, "decision": "kept", "reason": f"the candidate has no {metric} score"}
    c, ch = float(candidate_score), float(champion["score"])
    way = "lower" if metric in LOWER_IS_BETTER else "higher"
    if better(metric, c, ch, margin):
        return {**out, "decision": "promoted",
                "reason": f"{metric} {c:.4f} beats {champion['name']}'s {ch:.4f} by at least {margin:g} "
                          f"({way} is better)"}
    return {**out, "decision": "kept",
            "reason": f"{metric} {c:.4f} does not beat {champion['name']}'s {ch:.4f} by {margin:g} ({way} is better)"}
