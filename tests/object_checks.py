"""What the render tests share: where `render --execution exec1` puts a
task's inputs and outputs (propeller's layout), and helpers to compare the
objects plugins build. Resource quantities are compared by value (Go's
resource.Quantity prints 1000m as "1" and 1024Mi as "1Gi"; the value is
what Flyte sets)."""

import re
from decimal import Decimal

INPUTS = "s3://flyte-data/metadata/flytesnacks-development-exec1/n0/data/inputs.pb"
OUTPUT_PREFIX = "s3://flyte-data/metadata/flytesnacks-development-exec1/n0/data/0"
JOB_NAME = "exec1-n0-0"


_SUFFIXES = {
    "m": Decimal("0.001"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def quantity(text):
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?", str(text))
    assert match, f"not a Kubernetes quantity: {text!r}"
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2) or ""]


def resources(container):
    """{"requests": {name: value}, "limits": {...}} with parsed quantities."""
    res = container.get("resources") or {}
    return {kind: {k: quantity(v) for k, v in (res.get(kind) or {}).items()} for kind in ("requests", "limits")}


def expect(requests, limits):
    return {
        "requests": {k: quantity(v) for k, v in requests.items()},
        "limits": {k: quantity(v) for k, v in limits.items()},
    }


def env(container):
    return {e["name"]: e for e in container.get("env") or []}


def match_expressions(pod_spec):
    affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return [e for term in required.get("nodeSelectorTerms") or [] for e in term.get("matchExpressions") or []]


def tolerations(pod_spec):
    return [{k: t[k] for k in ("key", "operator", "value", "effect") if k in t} for t in pod_spec.get("tolerations") or []]
