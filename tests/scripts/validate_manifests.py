"""Validates deploy/kubernetes against real schemas; run by tests/tests/deploy.rs with the
pinned venv `cargo xtask setup` installs (target/tools/validate-venv).

  validate_manifests.py DEPLOY VERSION... [--kustomization DIR]... [--kubectl PATH]...

* The plain manifests, DEPLOY/kubernetes/*.yaml (observer.yaml, prometheus-operator.yaml), and
  every overlay, DEPLOY/kubernetes/overlays/*/, rendered by `kubectl kustomize` (and each
  extra --kustomization DIR): a document is named "<file>: Kind/name" or
  "overlays/<name>: Kind/name". An overlay kustomize cannot render is a failure.
* Each overlay is rendered by every --kubectl given (default: `kubectl` on PATH), e.g.
  kubectl 1.20 (kustomize v2.0.3) and 1.32 (kustomize v5.5): the renderings must be the same
  objects (compared parsed: key order and YAML style aside), or the overlay fails; the
  objects are then checked once.
* Kubernetes kinds: kubernetes-validate's JSON schemas, strict (unknown fields are errors),
  for every Kubernetes version given.
* Prometheus Operator kinds (ServiceMonitor, PrometheusRule): the models generated from the
  operator's CRDs (cloudcoil.models.prometheus_operator). Those models ignore unknown fields,
  so a document must also survive a round trip unchanged: a misspelt field is an error.
* The PrometheusRule's groups equal deploy/prometheus/rules.yaml's.

A kind with no schema is an error, never a warning. Prints one line per document and check;
exits 1 on any failure.
"""

import functools
import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator


def main(deploy: Path, versions: list[str], extra: list[Path], kubectls: list[str]) -> int:
    rules = yaml.safe_load((deploy / "prometheus" / "rules.yaml").read_text())
    sources = [(path.name, path.read_text(), None) for path in
               sorted((deploy / "kubernetes").glob("*.yaml"))]
    overlays = sorted(p.parent for p in (deploy / "kubernetes" / "overlays").glob("*/kustomization.yaml"))
    if not overlays:
        print(f"FAIL no overlay under {deploy / 'kubernetes' / 'overlays'}")
        return 1
    for d in overlays + extra:
        name = f"overlays/{d.name}" if d in overlays else str(d)
        text, error = kustomize(d, kubectls)
        if not error and len(kubectls) > 1:
            print(f"PASS {name}: the same objects from {', '.join(map(describe, kubectls))}")
        sources.append((name, text, error))
    failures = 0
    for name, text, error in sources:
        if error:
            failures += 1
            print(f"FAIL {name}: kubectl kustomize: {error}".replace("\n", " "))
            continue
        for doc in yaml.safe_load_all(text):
            failures += check(name, doc, rules, versions)
    return 1 if failures else 0


def kustomize(d: Path, kubectls: list[str]) -> tuple[str, str | None]:
    """The overlay rendered (by the first kubectl, once every one rendered the same objects),
    or why not."""
    renders = []
    for kubectl in kubectls:
        try:
            out = subprocess.run([kubectl, "kustomize", str(d)], capture_output=True, text=True)
        except FileNotFoundError:
            return "", f"{kubectl} is not installed (its kustomize renders the overlays)"
        if out.returncode != 0:
            return "", f"{describe(kubectl)}: {out.stderr.strip()}"
        renders.append((kubectl, out.stdout, list(yaml.safe_load_all(out.stdout))))
    first, text, want = renders[0]
    for kubectl, _, have in renders[1:]:
        if have != want:
            where = diff(want, have) or diff(have, want) or f"{len(want)} documents, {len(have)}"
            return "", f"{describe(first)} and {describe(kubectl)} differ at {where}"
    return text, None


@functools.cache
def describe(kubectl: str) -> str:
    """`kubectl v1.32.4 (kustomize v5.5.0) at PATH`; kubectl before 1.21 names no kustomize."""
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True,
                         text=True)
    try:
        v = json.loads(out.stdout)
    except ValueError:
        return kubectl
    k = f" (kustomize {v['kustomizeVersion']})" if "kustomizeVersion" in v else ""
    return f"kubectl {v['clientVersion']['gitVersion']}{k} at {kubectl}"


def check(source: str, doc: dict | None, rules: dict, versions: list[str]) -> int:
    if doc is None:
        return 0
    name = f"{source}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
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
        return 0
    except Exception as e:  # every failure is reported, then counted
        where = ".".join(str(p) for p in getattr(e, "path", []))
        print(f"FAIL {name}: {where} {type(e).__name__}: {e}".replace("\n", " "))
        return 1


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
    args, extra, kubectls = sys.argv[1:], [], []
    for flag, into, kind in [("--kustomization", extra, Path), ("--kubectl", kubectls, str)]:
        while flag in args:
            i = args.index(flag)
            into.append(kind(args[i + 1]))
            del args[i:i + 2]
    sys.exit(main(Path(args[0]), args[1:], extra, kubectls or ["kubectl"]))
