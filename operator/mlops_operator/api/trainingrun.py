"""TrainingRun: one training Job (tuning, evaluation, ONNX export) and its tracked results."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field

from .base import NAME_PATTERN, SHA256_PATTERN, ApiModel, Condition, PodOptions, cel, each, validations
from .estimator_params import PARAMS

#: (a CEL rule for parameter names exceeds the API server's cost budget and cannot type the
#: free-form params map; the operator checks names against PARAMS before it starts a Job)

#: The only estimators a TrainingRun may name (never an import path); each converts to ONNX
#: (tests/unit/test_training_convert.py). Kept equal to training.estimators.ALLOWED.
CLASSIFIERS = (
    "LogisticRegression", "RandomForestClassifier", "GradientBoostingClassifier",
    "HistGradientBoostingClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier",
    "SVC", "KNeighborsClassifier",
)
REGRESSORS = (
    "LinearRegression", "Ridge", "Lasso", "ElasticNet", "RandomForestRegressor",
    "GradientBoostingRegressor", "HistGradientBoostingRegressor", "ExtraTreesRegressor",
    "DecisionTreeRegressor", "LinearSVR", "SVR", "KNeighborsRegressor",
)
EstimatorType = Literal[CLASSIFIERS + REGRESSORS]  # type: ignore[valid-type]
Scalar = Union[int, float, str, bool]


class DatasetRef(ApiModel):
    """The Dataset, and optionally the version of it, to train on."""

    name: str = Field(pattern=NAME_PATTERN, max_length=253, description="Dataset in the same namespace.")
    digest: str | None = Field(None, pattern=SHA256_PATTERN,
                               description="Pin a version by digest; default: the latest valid version.")


class Split(ApiModel):
    """How rows are divided into train, validation and test sets."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("self.testFraction + self.validationFraction < 1.0",
            "testFraction + validationFraction must leave rows to train on"),
    )}

    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of rows held out for the final test.")
    validation_fraction: float = Field(0.0, ge=0.0, lt=1.0,
                                       description="Share held out for early stopping (0: use cross-validation only).")
    seed: int = Field(0, ge=0, description="Seed of the random split and of the estimator's random_state "
                                           "(unless estimator.params sets it).")
    time_column: str | None = Field(None, description="Split by time on this column (newest rows are the test set); "
                                                      "default: the dataset's timestamp column if it has one.")
    stratify: bool = Field(True, description="Keep class proportions in each split (classification).")


class Range(ApiModel):
    """A closed interval [low, high]."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("self.low < self.high", "low must be below high"),
    )}

    low: float = Field(description="Lower bound.")
    high: float = Field(description="Upper bound.")


class ParamSpace(ApiModel):
    """The values one hyperparameter may take: set exactly one of choice, uniform, loguniform, int."""

    # exactly one of the four: min/maxProperties (CEL cannot see `choice`, a list of any scalar)
    model_config = ApiModel.model_config | {"json_schema_extra": {
        "minProperties": 1, "maxProperties": 1,
        **validations(cel("!has(self.loguniform) || self.loguniform.low > 0.0", "loguniform needs low > 0")),
    }}

    choice: list[Scalar] | None = Field(None, min_length=1, max_length=100, description="A list of values.",
                                        json_schema_extra=each("A value: a number, string or boolean."))
    uniform: Range | None = Field(None, description="A float drawn uniformly from [low, high].")
    loguniform: Range | None = Field(None, description="A float drawn log-uniformly from [low, high] (low > 0).")
    int: Range | None = Field(None, description="An integer drawn uniformly from [low, high].")


class Tuning(ApiModel):
    """Hyperparameter search, each trial scored by cross-validation on the training split."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("self.strategy == 'none' || (has(self.space) && size(self.space) > 0)",
            "tuning.space must declare at least one parameter when a search strategy is set"),
        cel("self.strategy != 'grid' || !has(self.space) || self.space.all(k, !has(self.space[k].uniform) && "
            "!has(self.space[k].loguniform) && !has(self.space[k].int))",
            "grid search needs every parameter as a choice list"),
    )}

    strategy: Literal["none", "grid", "random"] = Field("none", description="none, grid, or random search.")
    space: dict[str, ParamSpace] | None = Field(None, max_length=50, description="Parameter name -> its values.",
                                                json_schema_extra=each("The values the named hyperparameter (a "
                                                                       "parameter of the estimator) may take."))
    max_trials: int = Field(20, ge=1, le=1000, description="Most trials to run (random search; caps grid search).")
    cv_folds: int = Field(3, ge=2, le=20, description="Cross-validation folds per trial.")
    parallelism: int = Field(1, ge=1, le=64, description="Trials run in parallel inside the Job.")
    early_stop_rounds: int | None = Field(None, ge=1,
                                          description="Stop after this many trials without improvement.")
    seed: int = Field(0, ge=0, description="Seed of the random search.")


class Estimator(ApiModel):
    """The scikit-learn estimator to train, and its fixed hyperparameters."""

    type: EstimatorType = Field(description="Estimator from the allowlist (scikit-learn class name).")  # type: ignore[valid-type]
    params: dict[str, Scalar] | None = Field(None, max_length=100,
                                             description="Fixed hyperparameters (checked against the estimator).",
                                             json_schema_extra=each("Value of the named parameter of the estimator "
                                                                    "(scikit-learn's spelling, e.g. max_depth)."))


#: a ranking metric's name: the family and the cut-off k, e.g. ndcg@10 (training.ranking_metrics)
RANKING_METRIC_PATTERN = r"^(ndcg|hit_rate|map|coverage)@[1-9][0-9]{0,3}$"


class Ranking(ApiModel):
    """A recommender: rows are (customer, item) candidate pairs, the label says whether the
    customer bought the item; a pointwise model scores each pair and ranks each customer's
    candidates."""

    group_column: str = Field(min_length=1, max_length=253,
                              description="Column whose value is one ranked list (a customer): metrics rank each "
                                          "group's candidates and average over groups.")
    item_column: str = Field(min_length=1, max_length=253,
                             description="Column naming the candidate item (its id); never a model input.")
    k: int = Field(10, ge=1, le=1000, description="Length of the recommended list: metrics are computed at k "
                                                  "(ndcg@k, hit_rate@k, map@k, coverage@k).")
    item_features: list[str] | None = Field(None, max_length=500,
                                            description="Feature columns that describe the candidate (the item, "
                                                        "and pair features such as a price ratio); the other "
                                                        "features describe the customer and are given once per "
                                                        "top-k request. Default: every feature is given per "
                                                        "candidate.",
                                            json_schema_extra=each("A feature column."))


class BaselineGate(ApiModel):
    """Promote only a recommender that beats the popularity baseline on the same test split."""

    metric: str = Field(pattern=RANKING_METRIC_PATTERN, max_length=20,
                        description="Ranking metric to compare, e.g. ndcg@10, computed at its own k "
                                    "(which may differ from ranking.k).")
    margin: float = Field(0.0, ge=0.0, description="Least improvement over the baseline required (absolute).")


class Promotion(ApiModel):
    """Automatic promotion of the new version when it beats the alias holder."""

    policy: Literal["none", "always", "ifBetter"] = Field("none", description="none: register only; always: move "
                                                                            "the alias; ifBetter: move it only if the "
                                                                            "candidate beats the champion.")
    alias: str = Field("production", pattern=NAME_PATTERN, max_length=63, description="Alias to move.")
    metric: str | None = Field(None, description="Metric compared on the same newest test data, e.g. roc_auc, "
                                                 "rmse; default: the run's metric.")
    margin: float = Field(0.0, ge=0.0, description="Least improvement required (absolute, in the metric's units).")
    require_baseline: BaselineGate | None = Field(None, description="Ranking only: whatever the policy, never "
                                                                    "promote a version that does not beat the "
                                                                    "popularity baseline (the most bought items "
                                                                    "of the training period) on this metric.")


class TrainingRunSpec(ApiModel):
    """Desired training: data, estimator, tuning, evaluation, registration. Immutable once
    created: a run is a record of what was trained; to train again, create a new TrainingRun."""

    # immutability is the CEL rule in crd.py's Kind.spec_rules: on the TrainingRun's own spec
    # only, not where this model is embedded (a DriftMonitor's retrain.template stays editable)
    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("(self.task == 'ranking') == has(self.ranking)", "spec.ranking is required for task ranking, and only "
                                                              "allowed with it"),
        cel("!has(self.promotion) || !has(self.promotion.requireBaseline) || self.task == 'ranking'",
            "promotion.requireBaseline needs task ranking (a baseline exists for recommenders only)"),
    )}

    model_name: str = Field(pattern=NAME_PATTERN, max_length=50,
                            description="Model this run registers a version of (ModelVersion <model>-v<N>).")
    dataset: DatasetRef = Field(description="Training data.")
    task: Literal["auto", "classification", "regression", "ranking"] = Field(
        "auto", description="classification, regression, ranking (set spec.ranking), or auto: classification or "
                            "regression, inferred from the label.")
    target: str | None = Field(None, description="Label column; default: the dataset's label column.")
    features: list[str] | None = Field(None, description="Columns to use; default: every feature column.",
                                       json_schema_extra=each("A column name."))
    exclude_features: list[str] | None = Field(None, description="Columns not to use.",
                                               json_schema_extra=each("A column name."))
    split: Split = Field(default_factory=Split)
    ranking: Ranking | None = Field(None, description="Task ranking: how rows form ranked lists (a recommender). "
                                                      "The split is always by time.")
    estimator: Estimator
    tuning: Tuning = Field(default_factory=Tuning)
    metric: str | None = Field(None, description="Metric to optimise and report first; default roc_auc "
                                                 "(binary), f1_macro (multiclass), rmse (regression) or ndcg@k "
                                                 "(ranking).")
    parity_tolerance: float = Field(1e-5, gt=0.0, le=0.1, description="Largest |probability difference| allowed "
                                                                       "between scikit-learn and ONNX Runtime.")
    promotion: Promotion = Field(default_factory=Promotion)
    active_deadline_seconds: int | None = Field(None, ge=1, description="Fail the training Job after this many "
                                                                        "seconds; default: no limit.")
    backoff_limit: int = Field(0, ge=0, le=10, description="Retries of the training Job.")
    job: PodOptions | None = Field(None, description="Resources and scheduling of the training Job.")


class Trial(ApiModel):
    """One hyperparameter combination tried by the search, scored by cross-validation."""

    number: int = Field(description="Position of the trial in the search, from 0.")
    params: dict[str, Scalar] = Field(description="The hyperparameters tried.",
                                      json_schema_extra=each("Value of the named parameter."))
    score: float | None = Field(None, description="Mean cross-validated score of the run's metric (higher is "
                                                  "better: error metrics such as rmse are negated).")
    std: float | None = Field(None, description="Standard deviation of the score across the folds.")
    seconds: float | None = Field(None, description="Wall-clock time of the trial, in seconds.")
    state: Literal["complete", "failed", "pruned"] = Field("complete", description="complete: scored; failed: the "
                                                                                   "estimator raised an error; pruned: "
                                                                                   "not run, the search stopped early.")


class PromotionResult(ApiModel):
    """What the promotion policy decided for the registered version, and why."""

    decision: Literal["promoted", "kept", "skipped"] = Field(description="promoted: the version holds the alias now; "
                                                                         "kept: the alias stays on the champion; "
                                                                         "skipped: the policy is none.")
    alias: str = Field(description="The alias the decision is about.")
    candidate_score: float | None = Field(None, description="The new version's score on the test data, in the "
                                                            "promotion metric.")
    champion: str | None = Field(None, description="The ModelVersion that held the alias when the run finished.")
    champion_score: float | None = Field(None, description="The champion's score on the same test data.")
    reason: str = Field("", description="Why, in words.")


class TrainingRunStatus(ApiModel):
    """Observed state of a TrainingRun, written by the operator: its Job, trials, metrics and the
    ModelVersion it registered."""

    observed_generation: int | None = Field(None, description="The metadata.generation of the spec this status "
                                                              "describes.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Succeeded.")
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = Field(
        None, description="Pending: waiting for a valid Dataset version; Running: the training Job runs; "
                          "Succeeded: a ModelVersion is registered; Failed: see message.")
    job_name: str | None = Field(None, description="The training Job.")
    start_time: str | None = Field(None, description="When the training Job was started (RFC 3339).")
    completion_time: str | None = Field(None, description="When the run succeeded or failed (RFC 3339).")
    duration_seconds: float | None = Field(None, description="Seconds from start to completion.")
    dataset_digest: str | None = Field(None, description="Dataset version trained on.")
    task: str | None = Field(None, description="classification, regression or ranking (as given, or inferred "
                                               "from the label).")
    metric: str | None = Field(None, description="The metric optimised and reported first, e.g. roc_auc or "
                                                 "ndcg@10.")
    score: float | None = Field(None, description="The metric's value on the test split.")
    trials: list[Trial] = Field(default_factory=list, description="Every trial (bounded to 200).")
    best_params: dict[str, Scalar] | None = Field(None, description="Hyperparameters of the best trial, used for "
                                                                    "the final model.",
                                                  json_schema_extra=each("Value of the named parameter."))
    metrics: dict[str, float] | None = Field(None, description="Test-set metrics of the final model.",
                                             json_schema_extra=each("Value of the named metric."))
    baseline: dict[str, float] | None = Field(None, description="Ranking: the popularity baseline's metrics on "
                                                                "the same test split (items ranked by how often "
                                                                "they were bought in the training period).",
                                              json_schema_extra=each("Value of the named metric."))
    ranking: dict[str, Union[int, str]] | None = Field(None, description="Ranking: the time cutoff of the test "
                                                                         "period and how many groups the metrics "
                                                                         "rest on.",
                                                       json_schema_extra=each("cutoff: first instant of the test "
                                                                              "period; k; groups, groupsEvaluated, "
                                                                              "groupsWithoutPositive (excluded "
                                                                              "from ndcg, hit_rate and map), "
                                                                              "items: counts in the test period."))
    model_version: str | None = Field(None, description="ModelVersion registered by this run.")
    artifact_digest: str | None = Field(None, description="sha256 of the exported model.onnx.")
    promotion: PromotionResult | None = Field(None, description="The promotion decision (spec.promotion).")
    message: str | None = Field(None, description="Why the run failed, with the log tail.")
    trial_count: int | None = Field(None, description="Trials run (the trials list keeps the best when cut).")
    trials_truncated: bool | None = Field(None, description="Whether the trials list was cut to the best trials "
                                                            "(the Job's log has them all).")
    stopped_early: bool | None = Field(None, description="Whether the search stopped early (spec.tuning."
                                                         "earlyStopRounds).")
    split: dict[str, Union[int, str]] | None = Field(None, description="How rows were split, and the row counts.",
                                                     json_schema_extra=each("how: random or by time, in words; "
                                                                            "train, validation, test: row counts."))
    evaluation: dict[str, Any] | None = Field(None, description="Confusion matrix and per-class metrics.",
                                              json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    parity: dict[str, float] | None = Field(None, description="ONNX vs scikit-learn on the test split.",
                                            json_schema_extra=each("rows: rows compared; maxAbsDiff: largest "
                                                                   "absolute difference of a prediction or "
                                                                   "probability; labelMismatches: rows whose "
                                                                   "predicted label differs."))
    trainer_version: str | None = Field(None, description="Trainer and the libraries the model's bytes depend on.")
    reproducible: bool | None = Field(None, description="Whether the same spec on the same dataset version gives "
                                                        "the same artifactDigest again (with the same "
                                                        "trainerVersion); if false, reproducibilityNote says why.")
    reproducibility_note: str | None = Field(None, description="Why this run's model bytes are not reproducible.")


def unknown_params(spec: dict) -> list[str]:
    """Parameter names (fixed or tuned, wire form) the chosen estimator does not have."""
    known = set(PARAMS.get(spec["estimator"]["type"], ()))
    names = set((spec["estimator"].get("params") or {})) | set(((spec.get("tuning") or {}).get("space") or {}))
    return sorted(names - known)
