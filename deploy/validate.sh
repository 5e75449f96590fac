#!/usr/bin/env bash
# Validates the deployment files offline, with the pinned tools of the project's Python venv
# (.ci/python-venv.sh makes it when missing):
#
#   - deploy/compose.yaml against the Compose Specification's JSON schema (vendored in
#     deploy/schemas/compose-spec.json) with check-jsonschema;
#   - every manifest of deploy/k8s/ with kubernetes-validate (strict, Kubernetes 1.29 and 1.37),
#     the KEDA resources against KEDA's vendored CRDs, and the references between the manifests;
#   - the coordinator.toml files of compose and the ConfigMap, deploy/prometheus.yml, and the
#     Grafana dashboard deploy/grafana/baton.json with its provisioning (deploy/validate.py does
#     all but the first; that every metric the dashboard queries is served is checked against a
#     real coordinator and worker by tests/tests/docs.rs).
#
# Exits non-zero when anything does not validate. Run by .ci/run; `bash deploy/validate.sh` by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=$(bash .ci/python-venv.sh)

echo "-- deploy/compose.yaml against deploy/schemas/compose-spec.json"
"$VENV/bin/check-jsonschema" --schemafile deploy/schemas/compose-spec.json deploy/compose.yaml

echo "-- deploy/k8s, deploy/compose/coordinator.toml, deploy/prometheus.yml, deploy/grafana"
"$VENV/bin/python" deploy/validate.py
echo "deploy: every file validates"
