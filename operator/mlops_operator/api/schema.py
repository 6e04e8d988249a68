"""Turn a pydantic model's JSON Schema into a Kubernetes structural OpenAPI v3 schema.

The API server accepts only structural schemas: every node typed, no `$ref`, no `anyOf` of
types, no `null` type, `additionalProperties` only for maps. Pydantic emits `$defs` + `$ref`,
`anyOf: [X, {type: null}]` for optionals and `const`/`enum` for literals; this module inlines
and rewrites them and keeps the Kubernetes extensions (`x-kubernetes-*`) the models declare.

Descriptions are what `kubectl explain` shows. They come from the models: a field's
`Field(description=...)`, else the docstring of the model the field holds (a field's own
description wins); the elements of a list or map field from `base.each(...)` (pydantic
describes the field, never its elements); and, for specs, a "Defaults to ..." sentence from
the field's default when its description does not already explain the default.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import BaseModel

from .base import ITEM_DESCRIPTION

_KEEP = {
    "type", "description", "properties", "required", "items", "enum", "format", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "minItems", "maxItems", "minProperties", "maxProperties", "uniqueItems", "additionalProperties",
    "default", "nullable",
}


class SchemaError(ValueError):
    pass


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].split("/")[-1]
            target = copy.deepcopy(defs[name])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            target.update(extra)  # a field's description overrides the model docstring
            return _resolve(target, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _structural(node: dict[str, Any], path: str) -> dict[str, Any]:
    node = dict(node)
    # Optional[X] -> X (absence is how Kubernetes says "not set")
    for key in ("anyOf", "oneOf"):
        if key not in node:
            continue
        options = [o for o in node.pop(key) if o.get("type") != "null"]
        if len(options) == 1:
            outer = {k: v for k, v in node.items()
                     if k in ("description", "default", ITEM_DESCRIPTION) or k.startswith("x-kubernetes-")}
            node = {**options[0], **outer}
            continue
        types = {o.get("type") for o in options}
        if types <= {"integer", "number"}:
            node["type"] = "number"
        elif types == {"integer", "string"}:
            node["x-kubernetes-int-or-string"] = True
        elif types <= {"integer", "number", "string", "boolean"}:
            node["x-kubernetes-preserve-unknown-fields"] = True  # any scalar
        else:
            raise SchemaError(f"{path}: a union of {sorted(map(str, types))} cannot be structural")
    # JSON Schema's numeric exclusive bounds -> OpenAPI 3.0's boolean form
    for ex, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(ex), (int, float)) and not isinstance(node.get(ex), bool):
            node[bound] = node.pop(ex)
            node[ex] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string" if all(isinstance(v, str) for v in node["enum"]) else "integer"
    item_description = node.pop(ITEM_DESCRIPTION, None)
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in _KEEP or k.startswith("x-kubernetes-"):
            out[k] = v
    if out.get("default") is None:
        out.pop("default", None)
    if "description" in out:
        out["description"] = _unwrap(out["description"])
    t = out.get("type")
    if t == "object":
        props = out.get("properties")
        if props:
            out["properties"] = {n: _structural(p, f"{path}.{n}") for n, p in props.items()}
            out.pop("additionalProperties", None)
        else:
            ap = out.get("additionalProperties")
            if isinstance(ap, dict) and ap:
                out["additionalProperties"] = _structural(_describe(ap, item_description), f"{path}[*]")
            else:
                out.pop("additionalProperties", None)
                out["x-kubernetes-preserve-unknown-fields"] = True
    elif t == "array":
        out["items"] = _structural(_describe(out.get("items") or {}, item_description), f"{path}[]")
    elif t is None and not (out.get("x-kubernetes-int-or-string") or out.get("x-kubernetes-preserve-unknown-fields")):
        # Any: an arbitrary JSON value
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("x-kubernetes-preserve-unknown-fields") and t is None and "x-kubernetes-int-or-string" not in out:
        out.pop("properties", None)
    return out


def _unwrap(text: str) -> str:
    """A docstring's paragraphs as single lines (`kubectl explain` wraps text itself)."""
    return "\n\n".join(" ".join(line.strip() for line in para.splitlines())
                       for para in text.strip().split("\n\n"))


def _describe(node: dict[str, Any], description: str | None) -> dict[str, Any]:
    """`node` with the description given for the elements of its list or map (it wins over the
    element model's docstring, as a field's description does)."""
    return {**node, "description": description} if description else node


def _document_defaults(node: dict[str, Any]) -> None:
    """Append "Defaults to X." to the description of every field with a scalar default that its
    description does not already explain (`kubectl explain` does not show defaults)."""
    for prop in (node.get("properties") or {}).values():
        default, text = prop.get("default"), prop.get("description", "").strip()
        if isinstance(default, (str, int, float, bool)) and default != "" and "default" not in text.lower():
            sentence = f"Defaults to {json.dumps(default)}."
            prop["description"] = f"{text} {sentence}" if text.endswith(".") else \
                (f"{text}. {sentence}" if text else sentence)
        _document_defaults(prop)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _document_defaults(node[key])


def openapi_schema(model: type[BaseModel], document_defaults: bool = False) -> dict[str, Any]:
    """Structural OpenAPI v3 schema of `model` (by alias, i.e. camelCase); `document_defaults`
    adds each default to its field's description (for specs, where the API server applies them)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    out = _structural(_resolve(raw, defs), model.__name__)
    if document_defaults:
        _document_defaults(out)
    return out
