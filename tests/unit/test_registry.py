"""The registry's pure rules: alias moves, history, stages, retention, promotion decisions."""

from __future__ import annotations

import pytest

from mlops_operator.api.estimator_params import PARAMS
from mlops_operator.api.trainingrun import unknown_params
from mlops_operator.registry import aliases as reg
from mlops_operator.registry.promotion import decide
from mlops_operator.training import estimators


def mv(version: int, aliases=(), held=(), history=(), by=None, t="2026-11-29T10:00:00Z", stage=None):
    meta = {"name": f"m-v{version}", "annotations": {reg.BY_ANNOTATION: by} if by else {},
            "managedFields": [{"manager": "kubectl-edit", "time": t, "fieldsV1": {"f:spec": {"f:aliases": {}}}}]}
    return {"metadata": meta, "spec": {"version": version, "aliases": list(aliases)},
            "status": {"heldAliases": list(held), "aliasHistory": list(history), "stage": stage}}


def test_estimator_params_table_matches_scikit_learn():
    assert PARAMS == {n: tuple(sorted(cls().get_params())) for n, cls in estimators.ALLOWED.items()}
    spec = {"estimator": {"type": "LogisticRegression", "params": {"C": 1, "n_trees": 3}},
            "tuning": {"space": {"Cee": {}}}}
    assert unknown_params(spec) == ["Cee", "n_trees"]


def test_a_new_claim_takes_the_alias_from_the_holder():
    old = mv(1, ["production"], ["production"])
    new = mv(2, ["production"], [], by="alice", t="2026-11-29T11:00:00Z")
    plan = reg.plan_moves([old, new])
    assert plan.removals == {"m-v1": ([], "alice", "production moved to m-v2")}


def test_two_new_claims_settle_on_the_newest_write():
    a = mv(1, ["production"], [], t="2026-11-29T12:00:00Z")
    b = mv(2, ["production"], [], t="2026-11-29T11:00:00Z")
    assert set(reg.plan_moves([a, b]).removals) == {"m-v2"}


def test_history_records_who_and_why_and_stages_follow():
    v = mv(1, [], ["production"], by="TrainingRun/r2")
    v["metadata"]["annotations"][reg.REASON_ANNOTATION] = "production moved to m-v2"
    history, changes = reg.history_updates(v, "now")
    assert changes == [("production", "removed")]
    assert history[-1] == {"alias": "production", "action": "removed", "time": "now", "by": "TrainingRun/r2",
                           "reason": "production moved to m-v2"}
    assert reg.stage_of(v, [v], history) == "archived"
    fresh = mv(3)
    assert reg.stage_of(fresh, [fresh, mv(2, ["production"])], []) == "candidate"
    assert reg.stage_of(mv(1), [mv(1), mv(2, ["production"])], []) == "archived"
    # without the annotation the writer is the field manager of spec.aliases
    assert reg.history_updates(mv(4, ["shadow"]), "now")[0][-1]["by"] == "kubectl-edit"


def test_retention_keeps_the_newest_archived_and_protected():
    vs = [mv(i, stage="archived") for i in range(1, 6)] + [mv(6, ["production"], stage="aliased")]
    assert reg.retention(vs, 2, protected={"m-v1"}) == ["m-v3", "m-v2"]
    assert reg.next_version(vs) == 7 and reg.next_version([]) == 1


@pytest.mark.parametrize("policy, metric, cand, champ, decision", [
    ("none", "roc_auc", 0.9, {"name": "v1", "score": 0.5}, "skipped"),
    ("always", "roc_auc", 0.1, {"name": "v1", "score": 0.9}, "promoted"),
    ("ifBetter", "roc_auc", 0.9, None, "promoted"),
    ("ifBetter", "roc_auc", 0.805, {"name": "v1", "score": 0.8}, "kept"),     # below the margin
    ("ifBetter", "roc_auc", 0.82, {"name": "v1", "score": 0.8}, "promoted"),
    ("ifBetter", "rmse", 9.0, {"name": "v1", "score": 10.0}, "promoted"),     # lower is better
    ("ifBetter", "rmse", 11.0, {"name": "v1", "score": 10.0}, "kept"),
    ("ifBetter", "roc_auc", 0.8, {"name": "v1", "reason": "features missing"}, "promoted"),
])
def test_promotion_decisions(policy, metric, cand, champ, decision):
    out = decide(policy, "production", metric, 0.01, cand, champ)
    assert out["decision"] == decision and out["reason"]


GATE = {"metric": "hit_rate@10", "margin": 0.02, "candidate": 0.70, "baseline": 0.66}


@pytest.mark.parametrize("policy,gate,champ,decision,says", [
    # beats the baseline by 0.04 >= 0.02, and the champion: promoted, the reason says both
    ("ifBetter", GATE, {"name": "m-v1", "score": 0.30}, "promoted", "beats the popularity baseline's hit_rate@10"),
    # beats the champion but not the baseline by the margin: kept, whatever the policy
    ("ifBetter", {**GATE, "candidate": 0.67}, {"name": "m-v1", "score": 0.30}, "kept", "does not beat the popularity"),
    ("always", {**GATE, "candidate": 0.60}, None, "kept", "most bought items"),
    # beats the baseline but not the champion: kept by ifBetter
    ("ifBetter", GATE, {"name": "m-v1", "score": 0.40}, "kept", "does not beat m-v1"),
    # no score to compare: the gate stays shut
    ("always", {**GATE, "candidate": None}, None, "kept", "no hit_rate@10 to compare"),
    # policy none decides nothing, gate or not
    ("none", {**GATE, "candidate": 0.0}, None, "skipped", "policy is none"),
])
def test_promotion_baseline_gate(policy, gate, champ, decision, says):
    out = decide(policy, "production", "ndcg@10", 0.0, 0.35, champ, baseline=gate)
    assert out["decision"] == decision and says in out["reason"]
