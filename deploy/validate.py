"""Checks the deployment files offline; run by deploy/validate.sh (see there).

- deploy/k8s/*.yaml: each built-in resource against the Kubernetes schemas of kubernetes-validate
  (strict: an unknown field is an error) for every version in K8S_VERSIONS; the KEDA resources
  against the CRDs vendored in deploy/schemas/keda/; kustomization.yaml's resources exist; the names
  the manifests use of each other (Secrets, ConfigMaps, selectors, ports) exist; the coordinator.toml
  of the ConfigMap parses and names only known settings; the KEDA queue pattern matches the workers'
  handler queues and not the dead-letter queue.
- deploy/compose/coordinator.toml: parses and names only known settings.
- deploy/prometheus.yml: parses as YAML and scrapes services of deploy/compose.yaml.
- deploy/grafana/baton.json: a dashboard whose panels query baton_ metrics, provisioned by compose.

A kind that no schema covers is an error, not a warning: a typo in apiVersion must not pass.
Prints one line per check and exits 1 when any failed.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
K8S = DEPLOY / "k8s"
# The oldest Kubernetes the manifests are checked against (they need 1.27 for gRPC probes; 1.29 is
# the oldest still maintained by most providers) and the newest kubernetes-validate knows.
K8S_VERSIONS = ["1.29.0", "1.37.0"]
# Custom resources: (apiVersion group, kind) -> vendored CRD.
CRDS = {
    ("keda.sh", "ScaledObject"): DEPLOY / "schemas/keda/keda.sh_scaledobjects.yaml",
    ("keda.sh", "TriggerAuthentication"): DEPLOY / "schemas/keda/keda.sh_triggerauthentications.yaml",
}

failures: list[str] = []


def ok(what: str) -> None:
    print(f"ok    {what}")


def fail(what: str) -> None:
    print(f"FAIL  {what}")
    failures.append(what)


def rel(p: Path) -> str:
    return str(p.relative_to(DEPLOY.parent))


def load_all(path: Path) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{rel(path)}: not YAML: {e}")
        return []
    for d in docs:
        if not isinstance(d, dict):
            fail(f"{rel(path)}: a document is not a mapping")
            return []
    return docs


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def strict(schema: object) -> object:
    """The schema with unknown fields refused wherever the CRD lists an object's fields and does not
    keep unknown ones (what `kubectl apply --validate=strict` does; the API server would silently
    drop a misspelt field)."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


def crd_schema(crd_path: Path, version: str) -> dict | None:
    crd = yaml.safe_load(crd_path.read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return strict(v["schema"]["openAPIV3Schema"])
    return None


def validate_resource(path: Path, doc: dict) -> None:
    api_version = doc.get("apiVersion", "")
    kind = doc.get("kind", "")
    where = f"{rel(path)}: {name_of(doc)}"
    group, _, version = api_version.rpartition("/")
    if (group, kind) in CRDS:
        schema = crd_schema(CRDS[(group, kind)], version)
        if schema is None:
            fail(f"{where}: the vendored CRD has no version {version}")
            return
        errors = sorted(
            jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path)
        )
        if errors:
            for e in errors:
                fail(f"{where}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
        else:
            ok(f"{where} against the vendored CRD ({api_version}, strict)")
        return
    for k8s in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, k8s, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{where} on Kubernetes {k8s}: {'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
            return
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            fail(f"{where}: no schema: {e.message} (a typo in apiVersion or kind?)")
            return
    ok(f"{where} on Kubernetes {', '.join(K8S_VERSIONS)} (strict)")


def known_settings() -> set[str]:
    """The settings deploy/coordinator.toml lists (a Rust test keeps it complete)."""
    text = (DEPLOY / "coordinator.toml").read_text()
    keys = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, re.M))
    keys |= set(re.findall(r"^#?\s*\[([a-z_]+)\]", text, re.M))
    return keys


def check_coordinator_toml(where: str, text: str) -> dict:
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(f"{where}: not TOML: {e}")
        return {}
    unknown = sorted(set(config) - known_settings())
    if unknown:
        fail(f"{where}: unknown coordinator settings {unknown} (the coordinator refuses them)")
    else:
        ok(f"{where}: TOML with known settings only")
    return config


def pod_spec(doc: dict) -> dict:
    return doc.get("spec", {}).get("template", {}).get("spec", {})


def check_references(docs: list[tuple[Path, dict]]) -> None:
    """Names the manifests use of each other exist in the directory."""
    by_kind: dict[str, dict[str, dict]] = {}
    for _, d in docs:
        by_kind.setdefault(d.get("kind", ""), {})[d.get("metadata", {}).get("name", "")] = d

    def secret_keys(name: str) -> set[str] | None:
        s = by_kind.get("Secret", {}).get(name)
        return None if s is None else set(s.get("stringData", {})) | set(s.get("data", {}))

    deployments = by_kind.get("Deployment", {})
    for dname, dep in deployments.items():
        where = f"Deployment/{dname}"
        spec = pod_spec(dep)
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        selector = dep["spec"]["selector"].get("matchLabels", {})
        if not all(labels.get(k) == v for k, v in selector.items()):
            fail(f"{where}: selector {selector} does not match its pod labels {labels}")
        for c in spec.get("containers", []):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    keys = secret_keys(ref["name"])
                    if keys is None or ref["key"] not in keys:
                        fail(f"{where}: env {env['name']} reads Secret {ref['name']} key {ref['key']}, which is not defined")
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            vols = {v["name"] for v in spec.get("volumes", [])}
            if mounts - vols:
                fail(f"{where}: mounts volumes that are not defined: {sorted(mounts - vols)}")
        for v in spec.get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] not in by_kind.get("ConfigMap", {}):
                fail(f"{where}: volume {v['name']} uses ConfigMap {v['configMap']['name']}, which is not defined")
            if "secret" in v and secret_keys(v["secret"]["secretName"]) is None:
                fail(f"{where}: volume {v['name']} uses Secret {v['secret']['secretName']}, which is not defined")
    ok("Deployments: selectors match their pods; every Secret, key, ConfigMap and volume they use is defined")

    def pods_selected(selector: dict) -> list[dict]:
        return [
            d
            for d in deployments.values()
            if all(d["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]

    for sname, svc in by_kind.get("Service", {}).items():
        targets = pods_selected(svc["spec"].get("selector", {}))
        if not targets:
            fail(f"Service/{sname}: its selector matches no Deployment's pods")
            continue
        port_names = {p.get("name") for d in targets for c in pod_spec(d)["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in port_names:
                fail(f"Service/{sname}: targetPort {p['targetPort']} is not a container port name")
    for pname, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not pods_selected(pdb["spec"]["selector"].get("matchLabels", {})):
            fail(f"PodDisruptionBudget/{pname}: its selector matches no Deployment's pods")
    for soname, so in by_kind.get("ScaledObject", {}).items():
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            fail(f"ScaledObject/{soname}: scales Deployment {target}, which is not defined")
        auths = by_kind.get("TriggerAuthentication", {})
        for t in so["spec"].get("triggers", []):
            ref = t.get("authenticationRef", {}).get("name")
            if ref and ref not in auths:
                fail(f"ScaledObject/{soname}: TriggerAuthentication {ref} is not defined")
    services = by_kind.get("Service", {})
    for iname, ing in by_kind.get("Ingress", {}).items():
        spec = ing["spec"]
        tls_hosts = {h for t in spec.get("tls", []) for h in t.get("hosts", [])}
        for rule in spec.get("rules", []):
            if rule.get("host") and rule["host"] not in tls_hosts:
                fail(f"Ingress/{iname}: host {rule['host']} has no TLS entry (the console sends bearer tokens)")
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"].get("service", {})
                svc = services.get(backend.get("name"))
                if svc is None:
                    fail(f"Ingress/{iname}: backend Service {backend.get('name')} is not defined")
                    continue
                port = backend.get("port", {})
                ports = svc["spec"]["ports"]
                if not any(p.get("name") == port.get("name") or p.get("port") == port.get("number") for p in ports):
                    fail(f"Ingress/{iname}: Service {backend['name']} has no port {port}")
                elif port.get("name") not in (None, "http") and port.get("number") != 8080:
                    fail(f"Ingress/{iname}: {port} is not the coordinators' HTTP port (http, 8080)")
    ok("Services, PodDisruptionBudgets, the ScaledObject and the Ingress select pods, ports and Services that exist")

    # The coordinators' settings, and the queue names the workers and KEDA must agree on.
    config: dict = {}
    for cname, cm in by_kind.get("ConfigMap", {}).items():
        for key, text in cm.get("data", {}).items():
            if key.endswith(".toml"):
                config = check_coordinator_toml(f"ConfigMap/{cname} {key}", text)
    namespace = config.get("namespace", "baton")
    for dname, dep in deployments.items():
        for c in pod_spec(dep)["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if "BATON_NAMESPACE" in env and env["BATON_NAMESPACE"] != namespace:
                fail(f"Deployment/{dname}: BATON_NAMESPACE={env['BATON_NAMESPACE']} but the coordinators use {namespace}")
            if "BATON_QUEUE_TYPE" in env and env["BATON_QUEUE_TYPE"] != config.get("queue_type", "quorum"):
                fail(f"Deployment/{dname}: BATON_QUEUE_TYPE differs from the coordinators' queue_type")
            if "BATON_DELIVERY_LIMIT" in env and int(env["BATON_DELIVERY_LIMIT"]) != config.get("delivery_limit", 5):
                fail(f"Deployment/{dname}: BATON_DELIVERY_LIMIT differs from the coordinators' delivery_limit")
    for soname, so in by_kind.get("ScaledObject", {}).items():
        for t in so["spec"].get("triggers", []):
            if t.get("type") != "rabbitmq":
                continue
            pattern = t["metadata"]["queueName"]
            # Queue names as shared/src/amqp.rs makes them: <namespace>.step.<handler>.
            handler_queue = f"{namespace}.step.docs.read"
            dead_letter = f"{namespace}.dead-letter"
            if not re.search(pattern, handler_queue):
                fail(f"ScaledObject/{soname}: queueName {pattern} does not match the handler queue {handler_queue}")
            elif re.search(pattern, dead_letter):
                fail(f"ScaledObject/{soname}: queueName {pattern} matches the dead-letter queue {dead_letter}")
            else:
                ok(f"ScaledObject/{soname}: {pattern} matches {handler_queue}, not {dead_letter}")


def check_kustomization() -> None:
    path = K8S / "kustomization.yaml"
    k = yaml.safe_load(path.read_text())
    text = path.read_text()
    listed = k.get("resources", [])
    missing = [r for r in listed if not (K8S / r).is_file()]
    if missing:
        fail(f"{rel(path)}: lists files that do not exist: {missing}")
    # Every manifest is either applied or named (commented out) as optional.
    others = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    unmentioned = [f for f in others if f not in listed and f not in text]
    if unmentioned:
        fail(f"{rel(path)}: does not mention {unmentioned}")
    if not missing and not unmentioned:
        ok(f"{rel(path)}: {len(listed)} resources exist; every manifest is listed or named as optional")


def check_prometheus() -> None:
    path = DEPLOY / "prometheus.yml"
    try:
        prom = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        fail(f"{rel(path)}: not YAML: {e}")
        return
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = set(compose.get("services", {}))
    hosts = [
        t.rsplit(":", 1)[0]
        for job in prom.get("scrape_configs", [])
        for sc in job.get("static_configs", [])
        for t in sc.get("targets", [])
    ]
    unknown = sorted(set(hosts) - services)
    if not hosts:
        fail(f"{rel(path)}: scrapes nothing")
    elif unknown:
        fail(f"{rel(path)}: scrapes hosts that are not services of deploy/compose.yaml: {unknown}")
    else:
        ok(f"{rel(path)}: YAML; its {len(hosts)} targets are services of deploy/compose.yaml")


def check_grafana() -> None:
    """deploy/grafana/baton.json is a dashboard whose every panel queries Baton's metrics (that each
    metric exists is checked against real processes by tests/tests/docs.rs), and compose mounts it
    where its provisioning looks."""
    path = DEPLOY / "grafana/baton.json"
    try:
        dash = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        fail(f"{rel(path)}: not JSON: {e}")
        return
    panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
    ids = [p.get("id") for p in dash.get("panels", [])]
    if len(set(ids)) != len(ids):
        fail(f"{rel(path)}: panel ids repeat")
    empty = [p.get("title") for p in panels if not any("baton_" in t.get("expr", "") for t in p.get("targets", []))]
    if empty:
        fail(f"{rel(path)}: panels without a query of a baton_ metric: {empty}")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = compose.get("services", {}).get("grafana", {}).get("volumes", [])
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/baton.yaml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    if f"./grafana/baton.json:{folder}/baton.json:ro" not in mounts:
        fail(f"deploy/compose.yaml: grafana does not mount {rel(path)} at {folder}, where its provisioning looks")
    if not empty and len(set(ids)) == len(ids):
        ok(f"{rel(path)}: {len(panels)} panels, each querying baton_ metrics; compose provisions it")


def main() -> int:
    docs: list[tuple[Path, dict]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            validate_resource(path, doc)
            docs.append((path, doc))
    check_kustomization()
    check_references(docs)
    check_coordinator_toml(rel(DEPLOY / "compose/coordinator.toml"), (DEPLOY / "compose/coordinator.toml").read_text())
    check_prometheus()
    check_grafana()
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
