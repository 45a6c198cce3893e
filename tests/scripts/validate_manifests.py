"""Validates deploy/kubernetes/*.yaml against real schemas; run by tests/tests/deploy.rs with
the pinned venv `cargo xtask setup` installs (target/tools/validate-venv).

* Kubernetes kinds: kubernetes-validate's JSON schemas, strict (unknown fields are errors),
  for every Kubernetes version given.
* Prometheus Operator kinds (ServiceMonitor, PrometheusRule): the models generated from the
  operator's CRDs (cloudcoil.models.prometheus_operator). Those models ignore unknown fields,
  so a document must also survive a round trip unchanged: a misspelt field is an error.
* The PrometheusRule's groups equal deploy/prometheus/rules.yaml's.

A kind with no schema is an error, never a warning. Prints one line per document and check;
exits 1 on any failure.
"""

import sys
from pathlib import Path

import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator


def main(deploy: Path, versions: list[str]) -> int:
    failures = 0
    rules = yaml.safe_load((deploy / "prometheus" / "rules.yaml").read_text())
    for path in sorted((deploy / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                    check_operator(doc)
                    if doc["kind"] == "PrometheusRule" and doc["spec"]["groups"] != rules["groups"]:
                        raise ValueError("spec.groups differ from deploy/prometheus/rules.yaml")
                    print(f"PASS {name} (Prometheus Operator CRD schema, round trip)")
                else:
                    for version in versions:
                        kubernetes_validate.validate(doc, version, strict=True)
                    print(f"PASS {name} (Kubernetes {', '.join(versions)}, strict)")
            except Exception as e:  # every failure is reported, then counted
                failures += 1
                where = ".".join(str(p) for p in getattr(e, "path", []))
                print(f"FAIL {name}: {where} {type(e).__name__}: {e}".replace("\n", " "))
    return 1 if failures else 0


def check_operator(doc: dict) -> None:
    model = getattr(operator, doc["kind"], None)
    if model is None:
        raise LookupError(f"no Prometheus Operator schema for kind {doc['kind']}")
    back = model.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_unset=True)
    if back != doc:
        raise ValueError(f"fields the CRD does not define were dropped: {diff(doc, back)}")


def diff(a, b, at: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k not in b:
                return f"{at}.{k}"
            d = diff(a[k], b[k], f"{at}.{k}")
            if d:
                return d
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, f"{at}[{i}]")
            if d:
                return d
    elif a != b:
        return f"{at}: {a!r} became {b!r}"
    return ""


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
