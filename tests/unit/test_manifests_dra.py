"""The DRA overlay (plugin/deploy/overlays/dra) and examples/dra: least privilege, paths the kubelet dials,
names that agree with the driver's defaults, and strict schema validation (resource.k8s.io/v1: 1.34+)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from cdi_fuse import defaults
from tests.unit.test_manifests import _render

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "plugin" / "deploy" / "overlays" / "dra"
EXAMPLES = sorted((REPO / "examples" / "dra").glob("*.yaml"))
NAMESPACE = "cdi-fuse-system"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def objects() -> list[Manifest]:
    return _render(OVERLAY)


def only(objects: list[Manifest], kind: str) -> Manifest:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def versions_from(minimum: tuple[int, int]) -> list[str]:
    found = {v for v in kubernetes_validate.utils.all_versions() if tuple(int(x) for x in v.split(".")[:2]) >= minimum}
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def example_documents() -> list[Manifest]:
    return [doc for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_overlay_has_what_a_driver_needs_and_nothing_else(objects: list[Manifest]) -> None:
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("ClusterRole", "cdi-fuse-dra"),
        ("ClusterRoleBinding", "cdi-fuse-dra"),
        ("DaemonSet", "cdi-fuse-dra"),
        ("DeviceClass", defaults.DRA_DRIVER),
        ("Namespace", NAMESPACE),
        ("NetworkPolicy", "cdi-fuse-dra-driver"),
        ("ServiceAccount", "cdi-fuse-dra"),
        ("ValidatingAdmissionPolicy", "cdi-fuse-dra-own-node-slices"),
        ("ValidatingAdmissionPolicyBinding", "cdi-fuse-dra-own-node-slices"),
    ]
    namespaced = {"DaemonSet", "NetworkPolicy", "ServiceAccount"}
    for obj in objects:
        assert ("namespace" in obj["metadata"]) == (obj["kind"] in namespaced), obj["kind"]


@pytest.mark.parametrize("version", versions_from((1, 34)))
def test_overlay_and_examples_validate_strictly(version: str, objects: list[Manifest]) -> None:
    failures = []
    for obj in [*objects, *example_documents()]:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {'.'.join(map(str, exc.path))}")
    assert not failures, "\n".join(failures)


def test_rbac_is_the_least_the_driver_uses(objects: list[Manifest]) -> None:
    rules = only(objects, "ClusterRole")["rules"]
    assert rules == [
        {
            "apiGroups": ["resource.k8s.io"],
            "resources": ["resourceslices"],
            "verbs": ["get", "list", "watch", "create", "update", "delete"],
        },
        {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
    ]
    binding = only(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cdi-fuse-dra", "namespace": NAMESPACE}]


def test_admission_policy_names_the_service_account_and_driver_it_restricts(objects: list[Manifest]) -> None:
    policy = only(objects, "ValidatingAdmissionPolicy")
    (condition,) = policy["spec"]["matchConditions"]
    assert f'"system:serviceaccount:{NAMESPACE}:cdi-fuse-dra"' in condition["expression"]
    expressions = " ".join(v["expression"] for v in policy["spec"]["validations"])
    assert f"'{defaults.DRA_DRIVER}'" in expressions
    assert "variables.tokenNode" in expressions
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["resourceslices"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    binding = only(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}


def test_device_class_selects_healthy_devices_of_the_driver(objects: list[Manifest]) -> None:
    spec = only(objects, "DeviceClass")["spec"]
    (selector,) = spec["selectors"]
    assert f"device.driver == '{defaults.DRA_DRIVER}'" in selector["cel"]["expression"]
    assert f"device.attributes['{defaults.DRA_DRIVER}'].healthy" in selector["cel"]["expression"]
    assert spec["extendedResourceName"] == defaults.RESOURCE_NAME


def _container(objects: list[Manifest]) -> Any:
    (container,) = only(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return container


def test_driver_container_has_no_privilege(objects: list[Manifest]) -> None:
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "cdi-fuse-dra"
    assert pod.get("hostNetwork") is False and not pod.get("hostPID") and not pod.get("hostIPC")
    security = _container(objects)["securityContext"]
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_driver_arguments_and_node_name(objects: list[Manifest]) -> None:
    container = _container(objects)
    assert container["command"] == ["cdi-fuse", "dra"]
    assert "--device-path=/host/dev/fuse" in container["args"]
    assert "--host-device-path=/dev/fuse" in container["args"]
    (env,) = container["env"]
    assert env == {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    assert "--health-address=127.0.0.1:9401" in container["args"]
    assert container["readinessProbe"]["exec"]["command"][-2:] == ["127.0.0.1:9401", "/healthz"]
    assert container["livenessProbe"]["exec"]["command"][-2:] == ["127.0.0.1:9401", "/livez"]


def test_kubelet_dirs_are_mounted_at_their_host_paths(objects: list[Manifest]) -> None:
    """The kubelet dials the endpoint path the driver reports, so in-pod and host paths must be the same."""
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in _container(objects)["volumeMounts"]}
    for path in (defaults.DRA_REGISTRY_DIR, defaults.DRA_PLUGINS_DIR, defaults.SPEC_DIR):
        mount = mounts[str(path)]
        assert volumes[mount["name"]]["hostPath"]["path"] == str(path)
        assert not mount.get("readOnly")
    assert mounts["/host/dev"]["readOnly"] is True
    writable = sorted(m for m, spec in mounts.items() if not spec.get("readOnly"))
    assert writable == ["/etc/cdi", "/tmp", "/var/lib/kubelet/plugins", "/var/lib/kubelet/plugins_registry"]


def test_example_claims_the_device_class_of_the_overlay(objects: list[Manifest]) -> None:
    documents = example_documents()
    (template,) = [d for d in documents if d["kind"] == "ResourceClaimTemplate"]
    (request,) = template["spec"]["spec"]["devices"]["requests"]
    assert request["exactly"]["deviceClassName"] == only(objects, "DeviceClass")["metadata"]["name"]
    pods = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Pod"}
    claim_pod = pods["fuse-bindfs-dra"]["spec"]
    assert claim_pod["resourceClaims"] == [{"name": "fuse", "resourceClaimTemplateName": template["metadata"]["name"]}]
    assert claim_pod["containers"][0]["resources"] == {"claims": [{"name": "fuse"}]}
    extended = pods["fuse-bindfs-extended"]["spec"]["containers"][0]["resources"]
    assert extended == {"limits": {defaults.RESOURCE_NAME: 1}}


def test_network_policy_allows_only_the_api_server_out(objects: list[Manifest]) -> None:
    policy = only(objects, "NetworkPolicy")["spec"]
    pod_labels = only(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"] == pod_labels
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy
    (egress,) = policy["egress"]
    assert egress == {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}
