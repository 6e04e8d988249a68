"""`kubectl mlops`: experiment tracking for people.

    kubectl mlops runs      [--model M]            TrainingRuns: phase, estimator, data, trials, metric, version
    kubectl mlops versions  [--model M]            the model registry: versions, aliases, stage, metrics, readiness
    kubectl mlops compare   A B [C...]             params and metrics side by side (runs or versions)
    kubectl mlops lineage   VERSION                Dataset -> TrainingRun -> ModelVersion -> InferenceServices
    kubectl mlops promote   VERSION [--alias A]    give a version an alias (the operator moves it off the old one)
    kubectl mlops demote    VERSION --alias A      take an alias off a version
    kubectl mlops export    VERSION -o DIR         the verified ONNX bundle (model.onnx, model.json), for embedding
    kubectl mlops ui        [--port P]             a read-only web view of all of this on localhost

The logic lives in pure functions over plain dicts (tables, compare, lineage, promote, export); this
module parses arguments, calls the API through `kubeapi.Kube`, prints, and turns every failure into
one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .kubeapi import CliError, Conflict, Kube, NotFound

FORMATS = ("table", "json", "yaml")


# ------------------------------------------------------------------------------------ output

def _emit(data: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=False, default=str))
    elif fmt == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())
    else:
        print(data)


def _table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    from .tables import render

    return render(headers, rows) if rows else empty


# ------------------------------------------------------------------------------------ commands

def cmd_runs(kube: Kube, a: argparse.Namespace) -> int:
    from .tables import run_summary, runs_table

    runs = kube.list("trainingruns", all_namespaces=a.all_namespaces)
    if a.output != "table":
        items = [run_summary(r) for r in sorted(runs, key=lambda r: r["metadata"].get("creationTimestamp") or "")]
        _emit({"items": [s for s in items if not a.model or s["model"] == a.model]}, a.output)
        return 0
    headers, rows = runs_table(runs, model=a.model, namespaces=a.all_namespaces)
    where = "any namespace" if a.all_namespaces else f"namespace {kube.namespace}"
    _emit(_table(headers, rows, f"No TrainingRuns{' of model ' + a.model if a.model else ''} in {where}."), "table")
    return 0


def cmd_versions(kube: Kube, a: argparse.Namespace) -> int:
    from .tables import version_sort_key, version_summary, versions_table

    selector = f"mlops.dev/model={a.model}" if a.model else None
    mvs = kube.list("modelversions", label_selector=selector, all_namespaces=a.all_namespaces)
    wanted = [m.strip() for m in a.metrics.split(",") if m.strip()] if a.metrics else None
    if a.output != "table":
        _emit({"items": [version_summary(m) for m in sorted(mvs, key=version_sort_key)]}, a.output)
        return 0
    headers, rows = versions_table(mvs, model=a.model, metrics=wanted, namespaces=a.all_namespaces)
    where = "any namespace" if a.all_namespaces else f"namespace {kube.namespace}"
    _emit(_table(headers, rows, f"No ModelVersions{' of model ' + a.model if a.model else ''} in {where}."),
          "table")
    return 0


def resolve(kube: Kube, ref: str) -> dict[str, Any]:
    """A ModelVersion or TrainingRun by name: `mv/NAME`, `tr/NAME`, or NAME (ModelVersion first)."""
    from .compare import parse_ref

    try:
        kind, name = parse_ref(ref)
    except ValueError as e:
        raise CliError(str(e)) from None
    plural = {"ModelVersion": "modelversions", "TrainingRun": "trainingruns"}
    obj: dict[str, Any] | None
    if kind:
        obj = kube.get(plural[kind], name)
    else:
        obj = kube.get_or_none("modelversions", name) or kube.get_or_none("trainingruns", name)
        if obj is None:
            raise NotFound(f'no ModelVersion or TrainingRun named "{name}" in namespace {kube.namespace}')
    obj.setdefault("kind", kind or ("ModelVersion" if obj.get("spec", {}).get("artifact") else "TrainingRun"))
    return obj


def cmd_compare(kube: Kube, a: argparse.Namespace) -> int:
    from .compare import compare, render_compare

    if len(a.refs) < 2:
        raise CliError("compare needs at least two runs or versions, e.g. kubectl mlops compare retail-v1 retail-v2")
    result = compare([resolve(kube, r) for r in a.refs])
    _emit(result if a.output != "table" else render_compare(result), a.output)
    return 0


def cmd_lineage(kube: Kube, a: argparse.Namespace) -> int:
    from .lineage import assemble, render_lineage

    mv = kube.get("modelversions", _strip_prefix(a.version))
    lin = (mv.get("spec") or {}).get("lineage") or {}
    run = kube.get_or_none("trainingruns", lin.get("trainingRun"))
    ds_name = lin.get("dataset") or (((run or {}).get("spec") or {}).get("dataset") or {}).get("name")
    dataset = kube.get_or_none("datasets", ds_name)
    try:
        services = kube.list("inferenceservices")
    except CliError:
        services = []  # e.g. no RBAC to list them: the tree still shows status.servedBy
    result = assemble(mv, run, dataset, services)
    _emit(result if a.output != "table" else render_lineage(result), a.output)
    return 0


def _strip_prefix(ref: str) -> str:
    from .compare import parse_ref

    try:
        kind, name = parse_ref(ref)
    except ValueError as e:
        raise CliError(str(e)) from None
    if kind not in (None, "ModelVersion"):
        raise CliError(f"{ref} is not a ModelVersion")
    return name


def _model_versions(kube: Kube, mv: dict[str, Any]) -> list[dict[str, Any]]:
    model = (mv.get("spec") or {}).get("model")
    if not model:
        return []
    try:
        return kube.list("modelversions", label_selector=f"mlops.dev/model={model}")
    except CliError:
        return []


def _patch_alias(kube: Kube, name: str, build) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Read, build the patch, apply; retry on a concurrent change (409). (object before, patched or None)."""
    for attempt in range(3):
        mv = kube.get("modelversions", name)
        body = build(mv)
        if body is None:
            return mv, None
        try:
            return mv, kube.patch("modelversions", name, body)
        except Conflict:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def cmd_promote(kube: Kube, a: argparse.Namespace) -> int:
    from .promote import RefusedError, current_holder, promote_patch

    name = _strip_prefix(a.version)
    try:
        mv, patched = _patch_alias(kube, name, lambda mv: promote_patch(mv, a.alias, kube.user, a.reason, a.force))
    except RefusedError as e:
        raise CliError(str(e)) from None
    model = (mv.get("spec") or {}).get("model")
    previous = current_holder(_model_versions(kube, mv), a.alias, exclude=name)
    result = {"modelVersion": name, "model": model, "alias": a.alias, "changed": patched is not None,
              "previousHolder": previous, "by": kube.user,
              "reason": a.reason or "promoted with kubectl mlops", "forced": bool(a.force)}
    if a.output != "table":
        _emit(result, a.output)
        return 0
    if patched is None:
        print(f"{name} already holds alias {a.alias} (model {model}); nothing to do.")
        return 0
    print(f"{name} now holds alias {a.alias} (model {model}), set by {kube.user}: {result['reason']}.")
    if previous:
        print(f"The operator takes {a.alias} off {previous} and records both moves in status.aliasHistory;")
    else:
        print(f"No other version of {model} held {a.alias}; the operator records the move in status.aliasHistory;")
    print(f"InferenceServices following {a.alias} roll out {name}. Check: kubectl mlops lineage {name}")
    return 0


def cmd_demote(kube: Kube, a: argparse.Namespace) -> int:
    from .promote import RefusedError, demote_patch

    name = _strip_prefix(a.version)
    try:
        mv, _ = _patch_alias(kube, name, lambda mv: demote_patch(mv, a.alias, kube.user, a.reason))
    except RefusedError as e:
        raise CliError(str(e)) from None
    model = (mv.get("spec") or {}).get("model")
    result = {"modelVersion": name, "model": model, "alias": a.alias, "changed": True, "by": kube.user,
              "reason": a.reason or "demoted with kubectl mlops"}
    if a.output != "table":
        _emit(result, a.output)
        return 0
    print(f"{name} no longer holds alias {a.alias} (model {model}), removed by {kube.user}: {result['reason']}.")
    print(f"No version of {model} holds {a.alias} now: InferenceServices following it keep serving what they "
          f"serve until another version gets it.")
    return 0


def cmd_export(kube: Kube, a: argparse.Namespace) -> int:
    from .export_io import export_bundle

    quiet = a.format != "table"
    result = export_bundle(kube, _strip_prefix(a.version), a.output_dir, claim=a.store_claim, image=a.image,
                           timeout=a.timeout, store=a.store, store_secret=a.store_secret,
                           log=None if quiet else (lambda m: print(m, file=sys.stderr)))
    if quiet:
        _emit(result, a.format)
        return 0
    for f in result["files"].values():
        print(f"wrote {f['path']} ({f['bytes']} bytes)")
    print(f"model.onnx sha256 {result['digest']} verified (= spec.artifact.digest of {result['modelVersion']})")
    return 0


def cmd_ui(kube: Kube, a: argparse.Namespace) -> int:
    from .ui.server import serve

    return serve(kube, a.address, a.port)


# ------------------------------------------------------------------------------------ parser

def _connection_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = argparse.SUPPRESS if suppress else None
    g = p.add_argument_group("cluster")
    g.add_argument("--kubeconfig", default=d, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    g.add_argument("--context", default=d, help="kubeconfig context (default: the current context)")
    g.add_argument("-n", "--namespace", default=d, help="namespace (default: the context's, else default)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubectl mlops",
        description="Experiment tracking for the mlops operator: runs, versions, comparisons, lineage, "
                    "aliases and ONNX export.",
        epilog="Names: a ModelVersion is <model>-v<N>; compare also takes mv/NAME and tr/NAME. "
               "Every command takes -o json|yaml for scripts (export: --format).")
    _connection_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, output: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        _connection_options(sp, suppress=True)
        if output:
            sp.add_argument("-o", "--output", choices=FORMATS, default="table", help="output format (default table)")
        return sp

    sp = add("runs", "TrainingRuns, oldest first: phase, estimator, dataset@digest, trials, metric, version")
    sp.add_argument("--model", help="only runs of this model")
    sp.add_argument("-A", "--all-namespaces", action="store_true", help="across all namespaces")
    sp.set_defaults(func=cmd_runs)

    sp = add("versions", "the model registry: versions, aliases, stage, key metrics, run, readiness")
    sp.add_argument("--model", help="only versions of this model")
    sp.add_argument("--metrics", help="comma-separated metrics to show (default: the key ones present)")
    sp.add_argument("-A", "--all-namespaces", action="store_true", help="across all namespaces")
    sp.set_defaults(func=cmd_versions)

    sp = add("compare", "params and metrics of runs or versions side by side")
    sp.add_argument("refs", nargs="+", metavar="NAME", help="ModelVersion or TrainingRun (mv/NAME, tr/NAME)")
    sp.set_defaults(func=cmd_compare)

    sp = add("lineage", "Dataset -> TrainingRun -> ModelVersion -> InferenceServices of a version")
    sp.add_argument("version", help="ModelVersion name")
    sp.set_defaults(func=cmd_lineage)

    sp = add("promote", "give a ModelVersion an alias (default production)")
    sp.add_argument("version", help="ModelVersion name")
    sp.add_argument("--alias", default="production", help="alias to give it (default production)")
    sp.add_argument("--reason", help="why (recorded in the alias history)")
    sp.add_argument("--force", action="store_true", help="promote even if the version is not Ready")
    sp.set_defaults(func=cmd_promote)

    sp = add("demote", "take an alias off a ModelVersion")
    sp.add_argument("version", help="ModelVersion name")
    sp.add_argument("--alias", required=True, help="alias to remove")
    sp.add_argument("--reason", help="why (recorded in the alias history)")
    sp.set_defaults(func=cmd_demote)

    sp = add("export", "write a ModelVersion's verified ONNX bundle (model.onnx, model.json) into a directory",
             output=False)
    sp.add_argument("version", help="ModelVersion name")
    sp.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="directory to write into (created)")
    sp.add_argument("--store-claim", help="file:// store: PVC of the artifact store (default mlops-store)")
    sp.add_argument("--image", help="file:// store: runtime image of the export pod (default $MLOPS_RUNTIME_IMAGE, "
                                    "else ghcr.io/mlops-dev/mlops-runtime:0.1.0)")
    sp.add_argument("--timeout", type=float, default=180.0,
                    help="file:// store: seconds to wait for the export pod to be ready, and for each read "
                         "(default 180)")
    sp.add_argument("--store", help="s3:// store: the store URI with an endpoint you can reach, e.g. "
                                    "s3://mlops?endpoint=http://127.0.0.1:8333 (default $MLOPS_STORE)")
    sp.add_argument("--store-secret", help="s3:// store: Secret in the namespace with AWS_ACCESS_KEY_ID and "
                                           "AWS_SECRET_ACCESS_KEY, read when those are not in your environment "
                                           "(default mlops-store-s3)")
    sp.add_argument("--format", choices=FORMATS, default="table", help="report format (default table)")
    sp.set_defaults(func=cmd_export)

    sp = add("ui", "a read-only web view of runs, versions, drift and datasets on localhost, with your "
                   "kubeconfig's credentials and RBAC", output=False)
    sp.add_argument("--address", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8700, help="port (default 8700; 0: any free port)")
    sp.set_defaults(func=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    a = parser.parse_args(argv)
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    try:
        kube = Kube.connect(kubeconfig=a.kubeconfig, context=a.context, namespace=a.namespace)
        return a.func(kube, a)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - one line for people; MLOPS_DEBUG=1 shows the traceback
        if os.environ.get("MLOPS_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {e} (set MLOPS_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
