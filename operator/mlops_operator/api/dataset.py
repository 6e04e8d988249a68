"""Dataset: collect, store, version and validate training data.

A Dataset names a source; the operator snapshots it in a Job into a content-addressed,
canonical Parquet copy, profiles and validates it, and keeps a bounded version history with
the latest valid version, which TrainingRuns and DriftMonitors use.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import (DNS_LABEL_PATTERN, DURATION_PATTERN, RFC3339_PATTERN, SHA256_PATTERN, ApiModel, Condition,
                   PodOptions, cel, each, validations)

ColumnType = Literal["numeric", "categorical", "boolean", "timestamp"]
ColumnRole = Literal["feature", "label", "id", "timestamp", "ignore"]
DataFormat = Literal["auto", "csv", "parquet"]


class FileSource(ApiModel):
    """A file or a directory of files on a volume mounted into the snapshot Job."""

    path: str = Field(description="Path inside the volume: a file, or a directory whose files (sorted by name) "
                                  "are concatenated.", min_length=1)
    claim_name: str | None = Field(None, description="PersistentVolumeClaim holding the data; default: the "
                                                     "operator's artifact-store claim.")
    format: DataFormat = Field("auto", description="File format; auto detects from the extension.")


class HttpSource(ApiModel):
    """A file downloaded over http(s)."""

    url: str = Field(description="http:// or https:// URL of a CSV or Parquet file.", pattern=r"^https?://.+")
    format: DataFormat = Field("auto", description="File format; auto detects from the extension or Content-Type.")
    sha256: str | None = Field(None, description="Expected sha256 of the download; a mismatch fails the snapshot.",
                               pattern=SHA256_PATTERN)
    timeout_seconds: int = Field(600, ge=1, le=86400,
                                 description="Longest the whole download may take, in seconds (connecting, redirects "
                                             "and the body together); a stalled or too slow server fails the "
                                             "snapshot. Keep it below snapshotDeadlineSeconds.")
    max_bytes: int = Field(10 * 1024 ** 3, ge=1,
                           description="Largest download allowed, in bytes (default 10 GiB): a larger Content-Length, "
                                       "or a body that grows past it, fails the snapshot. The download is written to "
                                       "the snapshot Job's scratch space, so the node needs that much ephemeral "
                                       "storage.")


class GeneratorSource(ApiModel):
    """Built-in synthetic data (seeded, deterministic), for demos and tests."""

    kind: Literal["retail", "retailRanking"] = Field(
        "retail", description="retail: customers' sessions with a purchase label (the purchase-propensity demo); "
                              "retailRanking: (customer, item) pairs of weekly newsletters with a purchase label "
                              "(the recommender; rows are rounded down to whole customers).")
    rows: int = Field(10000, ge=10, le=50_000_000, description="Number of rows to generate.")
    seed: int = Field(0, ge=0, description="Random seed; the same seed and settings give the same bytes.")
    behaviour_shift: float = Field(0.0, ge=0.0, le=1.0,
                                   description="How far customers' behaviour has moved from the original "
                                               "distribution (0 = none, 1 = strongly shifted).")


class CaptureSource(ApiModel):
    """Traffic an InferenceService captured (its `spec.capture`), joined with the labels sent
    back as feedback: the inputs the model saw, the label under the model's target name and
    `captured_at`."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("!has(self.since) || !has(self.until) || timestamp(self.since) < timestamp(self.until)",
            "capture.since must be before capture.until"),
    )}

    inference_service: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63,
                                   description="InferenceService in the same namespace whose captured traffic to use.")
    since: str | None = Field(None, description="Only rows captured at or after this time (RFC 3339).",
                              pattern=RFC3339_PATTERN, max_length=40)
    until: str | None = Field(None, description="Only rows captured before this time (RFC 3339).",
                              pattern=RFC3339_PATTERN, max_length=40)
    labelled_only: bool = Field(True, description="Leave out rows no label arrived for (a label joins its "
                                                  "request by the id sent with both).")


class Source(ApiModel):
    """Where the data comes from: set `type` and the matching block."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("self.type != 'file' || has(self.file)", "source.type file needs source.file"),
        cel("self.type != 'http' || has(self.http)", "source.type http needs source.http"),
        cel("self.type != 'generator' || has(self.generator)", "source.type generator needs source.generator"),
        cel("self.type != 'capture' || has(self.capture)", "source.type capture needs source.capture"),
        cel("[has(self.file), has(self.http), has(self.generator), has(self.capture)].filter(x, x).size() == 1",
            "set exactly one of source.file, source.http, source.generator, source.capture"),
    )}

    type: Literal["file", "http", "generator", "capture"] = Field(description="Kind of source.")
    file: FileSource | None = Field(None, description="A file or directory on a volume.")
    http: HttpSource | None = Field(None, description="An http(s) download.")
    generator: GeneratorSource | None = Field(None, description="Synthetic retail data.")
    capture: CaptureSource | None = Field(None, description="An InferenceService's captured, labelled traffic.")


class Column(ApiModel):
    """One column of the declared schema, and the checks that apply to it."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("!has(self.minimum) || !has(self.maximum) || self.minimum <= self.maximum",
            "minimum must not exceed maximum"),
        cel("!has(self.domain) || self.type == 'categorical' || self.type == 'boolean'",
            "domain applies only to categorical or boolean columns"),
        cel("(!has(self.minimum) && !has(self.maximum)) || self.type == 'numeric'",
            "minimum/maximum apply only to numeric columns"),
    )}

    name: str = Field(min_length=1, max_length=256, description="Column name as in the source.")
    type: ColumnType = Field(description="numeric, categorical, boolean or timestamp.")
    role: ColumnRole = Field("feature", description="feature (model input), label (target), id (unique key), "
                                                    "timestamp (event time, used for time-based splits) or ignore.")
    nullable: bool = Field(True, description="Whether missing values are allowed.")
    minimum: float | None = Field(None, description="Smallest allowed value (numeric columns).")
    maximum: float | None = Field(None, description="Largest allowed value (numeric columns).")
    domain: list[str] | None = Field(None, max_length=10000,
                                     description="Allowed values (categorical columns); others fail validation.",
                                     json_schema_extra=each("An allowed value, as it appears in the data."))


class DataSchema(ApiModel):
    """Declared schema. Omit it to infer the schema on the first snapshot and freeze it in status."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("self.columns.filter(c, c.role == 'label').size() <= 1", "at most one column may have role label"),
    )}

    # a list-map keyed by name: the API server rejects duplicate column names
    columns: list[Column] = Field(min_length=1, max_length=1000, description="The columns, in any order.",
                                  json_schema_extra={"x-kubernetes-list-type": "map",
                                                     "x-kubernetes-list-map-keys": ["name"]})
    allow_extra_columns: bool = Field(False, description="Accept (and drop) source columns not declared here.")


class ValidationRules(ApiModel):
    """Checks every snapshot must pass to become a valid version."""

    min_rows: int = Field(1, ge=0, description="Fewest rows a valid version may have.")
    max_null_fraction: float = Field(1.0, ge=0.0, le=1.0,
                                     description="Largest fraction of missing values allowed in any nullable column.")
    unique_ids: bool = Field(True, description="Values of the id column must be unique.")
    label_min_classes: int = Field(2, ge=1, description="Fewest distinct label values (classification data).")
    max_report_examples: int = Field(5, ge=0, le=50, description="Example values kept per failed check.")


class DatasetSpec(ApiModel):
    """Desired state of a Dataset."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("!has(self.labelColumn) || !has(self.schema) || self.schema.columns.exists(c, c.name == self.labelColumn)",
            "labelColumn must name a column of schema.columns", field_path=".labelColumn"),
    )}

    source: Source = Field(description="Where to read the data from.")
    schema_: DataSchema | None = Field(None, alias="schema", description="Declared schema; inferred on the first "
                                                                         "snapshot when omitted.")
    label_column: str | None = Field(None, min_length=1,
                                     description="Target column; default: the schema column with role label.")
    validation: ValidationRules = Field(default_factory=ValidationRules, description="Validation rules.")
    refresh_interval: str | None = Field(None, pattern=DURATION_PATTERN,
                                         description="Re-snapshot the source this often (e.g. 30m, 6h); a new version "
                                                     "appears only when the content changed. Omit to snapshot only on "
                                                     "creation, spec changes, or a change of the mlops.dev/refresh "
                                                     "annotation.")
    version_history_limit: int = Field(10, ge=1, le=100, description="Versions kept in status.versions.")
    job: PodOptions | None = Field(None, description="Resources and scheduling of the snapshot Job.")
    snapshot_deadline_seconds: int = Field(3600, ge=1,
                                           description="Stop a snapshot Job that runs longer than this many seconds "
                                                       "(the Job's activeDeadlineSeconds) and report the snapshot as "
                                                       "failed, so a stalled source cannot hold the Dataset in "
                                                       "Snapshotting forever.")


class DatasetVersion(ApiModel):
    """One snapshot of the source: a content-addressed, immutable version of the data."""

    id: str = Field(description="Short version id: the first 12 hex digits of the digest.")
    digest: str = Field(description="sha256 of the canonical Parquet snapshot: the version's identity.")
    rows: int = Field(description="Row count.")
    columns: int = Field(0, description="Column count.")
    created_at: str = Field(description="When the snapshot was taken.")
    validated: bool = Field(description="Whether it passed validation.")
    uri: str = Field("", description="Where the snapshot and its profile live in the artifact store.")
    failed_checks: int | None = Field(None, description="Number of failed checks (invalid versions).")


class ValidationFailure(ApiModel):
    """One check a snapshot failed."""

    check: str = Field(description="Which check failed, e.g. type, range, domain, nulls, minRows, uniqueIds, label.")
    column: str | None = Field(None, description="Column concerned, if any.")
    count: int = Field(0, description="Rows that failed.")
    examples: list[str] = Field(default_factory=list, description="A few offending values.",
                                json_schema_extra=each("An offending value, as text."))
    message: str = Field(description="What is wrong.")


class ValidationReport(ApiModel):
    """The outcome of validating one snapshot against the schema and the validation rules."""

    digest: str = Field(description="Version the report is about.")
    passed: bool = Field(description="Whether every check passed (the version is valid).")
    failures: list[ValidationFailure] = Field(default_factory=list, description="The checks that failed.")


class ProfileSummary(ApiModel):
    """Row and column counts, label balance and missing values of a version (the full profile is in
    the artifact store)."""

    rows: int = Field(description="Row count.")
    columns: int = Field(description="Column count.")
    label_distribution: dict[str, int] | None = Field(None, description="Rows per label value (classification).",
                                                      json_schema_extra=each("Rows with this label value."))
    null_counts: dict[str, int] | None = Field(None, description="Missing values per column that has any.",
                                               json_schema_extra=each("Missing values in this column."))


class DatasetStatus(ApiModel):
    """Observed state of a Dataset, written by the operator: its versions, schema, profile and
    validation."""

    observed_generation: int | None = Field(None, description="The metadata.generation of the spec this status "
                                                              "describes.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Validated, Progressing.")
    phase: Literal["Pending", "Snapshotting", "Ready", "Failed"] | None = Field(
        None, description="Pending: nothing snapshotted yet; Snapshotting: a snapshot Job runs and there is no valid "
                          "version yet; Ready: a valid version is available; Failed: the last snapshot failed or did "
                          "not pass validation, and there is no valid version.")
    latest: DatasetVersion | None = Field(None, description="The newest snapshot, valid or not.")
    latest_valid: DatasetVersion | None = Field(None, description="The newest valid snapshot: what training uses.")
    versions: list[DatasetVersion] = Field(default_factory=list, description="Bounded history, newest first "
                                                                             "(spec.versionHistoryLimit).")
    schema_: DataSchema | None = Field(None, alias="schema", description="The schema in force (declared, or inferred "
                                                                         "on the first snapshot and frozen).")
    profile: ProfileSummary | None = Field(None, description="Summary of the latest valid version's profile.")
    validation: ValidationReport | None = Field(None, description="Report of the latest snapshot's validation.")
    active_job: str | None = Field(None, description="Snapshot Job in progress.")
    last_snapshot_time: str | None = Field(None, description="When the last snapshot finished (RFC 3339).")
    last_snapshot_trigger: str | None = Field(None, description="Trigger (generation, mlops.dev/refresh annotation, "
                                                                "refresh period) of the last finished snapshot.")
