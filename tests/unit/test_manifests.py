"""Deployment manifests, examples and the Containerfile.

The overlays are rendered by the real kustomize (tests/kustomize.py): what `kubectl apply -k` would send.
Every rendered object and example is validated strictly against each Kubernetes version from 1.30 on.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from cdi_fuse import defaults
from cdi_fuse.deviceplugin import metrics
from tests import kustomize

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "plugin" / "deploy"
BASE = DEPLOY / "base"
COMPONENTS = DEPLOY / "components"
OVERLAYS = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
EXAMPLE_PODS = REPO / "examples" / "pods"
EXAMPLES = sorted(p for p in EXAMPLE_PODS.glob("*.yaml") if p.name != "kustomization.yaml")
APPARMOR_VARIANT = REPO / "examples" / "apparmor"
APPARMOR_PROFILE = {"type": "Localhost", "localhostProfile": "cdi-fuse"}
CONTAINERFILE = REPO / "plugin" / "Containerfile"
README = REPO / "README.md"
MIN_KUBERNETES = (1, 30)
NAMESPACE = "cdi-fuse-system"
RESOURCE = "cdi-fuse.io/fuse"
LOOPBACK_METRICS = "127.0.0.1:9400"

Manifest = dict[str, Any]


# resource.k8s.io/v1 (the DRA overlay and examples) exists from Kubernetes 1.34.
_MIN_VERSION_OF_GROUP = {"resource.k8s.io/v1": (1, 34)}


# --- helpers ----------------------------------------------------------------------------------------


def _render(directory: Path) -> list[Manifest]:
    return kustomize.build(directory)


def _with_components(tmp_path: Path, *components: str, resources: tuple[Path, ...] = (BASE,)) -> list[Manifest]:
    """Render a kustomization of `resources` plus `components` (kustomize wants relative paths)."""
    work = tmp_path / "combined"
    work.mkdir()
    rel = [os.path.relpath(r, work) for r in resources]
    comps = [os.path.relpath(COMPONENTS / c, work) for c in components]
    (work / "kustomization.yaml").write_text(yaml.safe_dump({"resources": rel, "components": comps}))
    return _render(work)


def _only(objects: list[Manifest], kind: str) -> Manifest:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container(objects: list[Manifest]) -> Manifest:
    containers = _only(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Manifest = containers[0]
    return container


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Flatten to (path, leaf) pairs; list items are keyed by their `name` when they have one."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            key = f"[{item['name']}]" if isinstance(item, dict) and "name" in item else f"[{index}]"
            yield from _leaves(item, (*path, key))
    else:
        yield path, value


def _objects_diff(before: list[Manifest], after: list[Manifest]) -> dict[str, tuple[Any, Any]]:
    """Leaf changes between two renderings, keyed `Kind/name:path`; an added object shows as added leaves."""

    def leaves(objects: list[Manifest]) -> dict[str, Any]:
        return {
            f"{o['kind']}/{o['metadata']['name']}:" + "/".join(path): leaf for o in objects for path, leaf in _leaves(o)
        }

    old, new = leaves(before), leaves(after)
    return {key: (old.get(key), new.get(key)) for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def _options(args: list[str]) -> list[tuple[str, str | None]]:
    """`--name=value` / `--flag` arguments as (name, value) pairs, in order."""
    pairs: list[tuple[str, str | None]] = []
    for arg in args:
        assert arg.startswith("--"), f"positional argument {arg!r}"
        name, sep, value = arg.partition("=")
        pairs.append((name, value if sep else None))
    return pairs


def _option(args: list[str], name: str) -> list[str | None]:
    return [value for key, value in _options(args) if key == name]


def _kubernetes_versions() -> list[str]:
    versions = {v for v in kubernetes_validate.utils.all_versions()}
    chosen = sorted(
        (v for v in versions if tuple(int(x) for x in v.split(".")[:2]) >= MIN_KUBERNETES),
        key=lambda v: tuple(int(x) for x in v.split(".")),
    )
    assert chosen, "kubernetes-validate ships no schema for Kubernetes >= 1.30"
    return chosen


def _mounts_by_volume(objects: list[Manifest]) -> dict[str, tuple[Manifest, Manifest]]:
    pod = _only(objects, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount for mount in pod["containers"][0]["volumeMounts"]}
    assert volumes.keys() == mounts.keys(), "every volume is mounted, every mount has a volume"
    return {name: (volumes[name], mounts[name]) for name in volumes}


def _host_path_for(objects: list[Manifest], container_path: str) -> tuple[str, bool] | None:
    """The host path behind a path inside the container and whether it is read-only; None: not on a hostPath."""
    best: tuple[str, Manifest, Manifest] | None = None
    for volume, mount in _mounts_by_volume(objects).values():
        prefix = mount["mountPath"].rstrip("/") + "/"
        on_mount = "hostPath" in volume and (container_path + "/").startswith(prefix)
        if on_mount and (best is None or len(prefix) > len(best[0])):
            best = (prefix, volume, mount)
    if best is None:
        return None
    prefix, volume, mount = best
    host = volume["hostPath"]["path"].rstrip("/") + "/" + container_path[len(prefix) :]
    return host.rstrip("/"), bool(mount.get("readOnly", False))


@pytest.fixture(scope="module")
def base() -> list[Manifest]:
    return _render(BASE)


# --- schema validation ------------------------------------------------------------------------------


def test_the_expected_overlays_components_and_examples_exist() -> None:
    assert OVERLAYS == ["default", "dra", "legacy-aliases", "microk8s", "runtime-aware"]
    assert sorted(p.name for p in COMPONENTS.iterdir()) == ["metrics-endpoint", "runtime-socket"]
    assert [p.name for p in EXAMPLES] == [
        "bindfs.yaml",
        "buildah.yaml",
        "non-root.yaml",
        "rclone.yaml",
        "sshfs.yaml",
        "user-namespaces.yaml",
    ]


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Manifest]]:
    """Every object the overlays (and each component on the base) render, and every example: rendered once."""
    found: list[tuple[str, Manifest]] = []
    renderings = {str(d.relative_to(REPO)): _render(d) for d in [BASE, *(DEPLOY / "overlays" / o for o in OVERLAYS)]}
    for component in sorted(p.name for p in COMPONENTS.iterdir()):
        renderings[f"base+{component}"] = _with_components(tmp_path_factory.mktemp(component), component)
    for where, objects in renderings.items():
        found += [(f"{where}:{obj['kind']}/{obj['metadata']['name']}", obj) for obj in objects]
    for example in EXAMPLES:
        for obj in yaml.safe_load_all(example.read_text()):
            found.append((f"{example.relative_to(REPO)}:{obj['kind']}/{obj['metadata']['name']}", obj))
    return found


@pytest.fixture(scope="module")
def schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads (and parses) the schema files for every object; read each once instead."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            kubernetes_validate.utils, "schema_contents", functools.cache(kubernetes_validate.utils.schema_contents)
        )
        yield


@pytest.mark.parametrize("version", _kubernetes_versions())
def test_every_manifest_validates_strictly(
    version: str, documents: list[tuple[str, Manifest]], schemas_read_once: None
) -> None:
    assert len(documents) >= 3 * (1 + len(OVERLAYS)) + len(EXAMPLES)
    unique = {json.dumps(obj, sort_keys=True): name for name, obj in documents}  # renderings share objects
    failures = []
    for name, obj in ((name, json.loads(text)) for text, name in unique.items()):
        minimum = _MIN_VERSION_OF_GROUP.get(obj["apiVersion"])
        if minimum and tuple(int(x) for x in version.split(".")[:2]) < minimum:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}")
    assert not failures, "\n".join(failures)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """Guards the test above: kubernetes-validate really rejects what the API server would."""
    daemonset = _only(_render(BASE), "DaemonSet")
    daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, _kubernetes_versions()[0], strict=True)


# --- the DaemonSet ----------------------------------------------------------------------------------


def test_namespace_daemonset_and_policy_land_in_cdi_fuse_system(base: list[Manifest]) -> None:
    assert [o["kind"] for o in base] == ["Namespace", "DaemonSet", "NetworkPolicy"]
    assert _only(base, "Namespace")["metadata"]["name"] == NAMESPACE
    for kind in ("DaemonSet", "NetworkPolicy"):
        assert _only(base, kind)["metadata"]["namespace"] == NAMESPACE, kind
    # hostPath volumes are what needs the privileged Pod Security level; nothing else does
    labels = _only(base, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_container_is_root_without_any_privilege(base: list[Manifest]) -> None:
    security = _container(base)["securityContext"]

    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # an explicit AppArmor profile, even RuntimeDefault, makes the kubelet refuse the pod where AppArmor is off
    assert "appArmorProfile" not in security
    assert "appArmorProfile" not in _only(base, "DaemonSet")["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsUser"] == 0


def test_pod_shares_nothing_with_the_host_but_its_volumes(base: list[Manifest]) -> None:
    pod = _only(base, "DaemonSet")["spec"]["template"]["spec"]

    assert pod["hostNetwork"] is False
    for field in ("hostPID", "hostIPC", "shareProcessNamespace", "hostUsers"):
        assert field not in pod
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert len(pod["containers"]) == 1
    assert "initContainers" not in pod


def test_network_policy_denies_all_traffic_of_the_plugin_pods(base: list[Manifest]) -> None:
    policy = _only(base, "NetworkPolicy")["spec"]
    pod_labels = _only(base, "DaemonSet")["spec"]["template"]["metadata"]["labels"]

    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    # only the device plugin: a DRA driver in this namespace needs the API server
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "device-plugin"
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy and "egress" not in policy


def test_scheduling_runs_everywhere_before_other_pods(base: list[Manifest]) -> None:
    daemonset = _only(base, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]

    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert daemonset["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    selector = daemonset["spec"]["selector"]["matchLabels"]
    assert selector.items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()


def test_resources_are_bounded(base: list[Manifest]) -> None:
    resources = _container(base)["resources"]

    assert set(resources) == {"requests", "limits"}
    # sized from the measured RSS (56-58 MiB) with headroom
    assert resources["requests"] == {"cpu": "10m", "memory": "56Mi"}
    assert resources["limits"] == {"cpu": "200m", "memory": "96Mi"}


def _probe(container: Manifest, kind: str) -> list[str]:
    probe = container[kind]
    assert set(probe) - {"exec", "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold"} == set()
    command: list[str] = probe["exec"]["command"]
    return command


def test_http_server_listens_on_loopback_and_exec_probes_reach_it(base: list[Manifest]) -> None:
    container = _container(base)

    assert _option(container["args"], "--metrics-address") == [LOOPBACK_METRICS]
    assert "ports" not in container, "nothing listens on the pod IP"
    readiness, liveness = _probe(container, "readinessProbe"), _probe(container, "livenessProbe")
    assert readiness[:4] == ["python3", "-I", "-S", "-c"] and readiness[-2:] == [LOOPBACK_METRICS, "/healthz"]
    assert liveness[:-1] == readiness[:-1] and liveness[-1] == "/livez"
    # a probe runs a process in the container (measured ~45 ms CPU each): a few a minute
    per_minute = sum(60 / container[p]["periodSeconds"] for p in ("readinessProbe", "livenessProbe"))
    assert per_minute <= 4


class _Health:
    def __init__(self) -> None:
        self.healthy = True

    def __call__(self) -> tuple[bool, str]:
        return self.healthy, "registered" if self.healthy else "device missing"


@pytest.mark.parametrize("kind", ["readinessProbe", "livenessProbe"])
def test_the_manifests_probe_command_works_against_the_plugins_http_server(base: list[Manifest], kind: str) -> None:
    """The probe as written in the manifest (python3 -I -S -c ...), run against the plugin's own server."""
    health = _Health()
    server = metrics.MetricsServer("127.0.0.1:0", metrics.PluginMetrics(), health)
    server.start()
    try:
        host, port = str(server.address[0]), int(server.address[1])
        argv = [
            sys.executable,
            *_probe(_container(base), kind)[1:-2],
            f"{host}:{port}",
            _probe(_container(base), kind)[-1],
        ]

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

        ok = run()
        assert ok.returncode == 0, ok.stderr
        health.healthy = False
        unhealthy = run()
    finally:
        server.stop()
    gone = run()

    if kind == "readinessProbe":  # /healthz follows registration and device health
        assert unhealthy.returncode == 1 and "/healthz answered [b'503']" in unhealthy.stderr
    else:  # /livez only asks whether the process answers
        assert unhealthy.returncode == 0, unhealthy.stderr
    assert gone.returncode == 1 and f"{host}:{port}: " in gone.stderr


def test_plugin_arguments(base: list[Manifest]) -> None:
    container = _container(base)

    assert container["command"] == ["cdi-fuse", "plugin"]
    assert _option(container["args"], "--generate") == [None]
    assert _option(container["args"], "--strategy") == [], "auto, the default"
    assert _option(container["args"], "--resource-name") == [], "base advertises the default name only"
    assert _option(container["args"], "--runtime-endpoint") == []


def test_no_runtime_socket_is_reachable(base: list[Manifest]) -> None:
    """Least privilege: the plugin's default CRI endpoints are on no mount, and no runtime dir is mounted."""
    for endpoint in defaults.RUNTIME_ENDPOINTS:
        assert _host_path_for(base, endpoint.removeprefix("unix://")) is None, endpoint
    host_paths = [v["hostPath"]["path"] for v, _ in _mounts_by_volume(base).values() if "hostPath" in v]
    assert not [p for p in host_paths if "containerd" in p or "crio" in p or p in ("/run", "/var/run")]


def test_host_dev_is_mounted_read_only_recursively_and_the_device_path_is_on_it(base: list[Manifest]) -> None:
    volume, mount = _mounts_by_volume(base)["host-dev"]
    (device_path,) = _option(_container(base)["args"], "--device-path")
    assert device_path is not None

    assert volume["hostPath"] == {"path": "/dev", "type": "Directory"}
    assert mount["mountPath"] == "/host/dev"
    assert mount["readOnly"] is True
    # /dev/shm, /dev/mqueue, ... stay writable through a plain read-only bind (seen with containerd 1.7)
    assert mount["recursiveReadOnly"] == "IfPossible"
    assert _host_path_for(base, device_path) == ("/dev/fuse", True)


def test_writable_mounts_are_only_the_static_spec_dir_device_plugins_and_tmp(base: list[Manifest]) -> None:
    writable = {
        name: (volume.get("hostPath", {}).get("path"), mount["mountPath"])
        for name, (volume, mount) in _mounts_by_volume(base).items()
        if not mount.get("readOnly", False)
    }

    assert writable == {
        "cdi-static": ("/etc/cdi", "/etc/cdi"),
        "device-plugins": ("/var/lib/kubelet/device-plugins", "/var/lib/kubelet/device-plugins"),
        "tmp": (None, "/tmp"),
    }
    volume, _ = _mounts_by_volume(base)["tmp"]
    assert volume["emptyDir"]["medium"] == "Memory"
    # the spec dirs are the plugin's defaults; --generate writes into the first, the writable one
    assert [_host_path_for(base, str(d)) for d in defaults.SPEC_DIRS] == [("/etc/cdi", False), ("/var/run/cdi", True)]


def test_every_host_path_is_in_the_threat_model(base: list[Manifest]) -> None:
    readme = README.read_text()
    model = readme[readme.index("### Threat model") :]
    model = model[: model.index("\n## ", 1)]
    for volume, _mount in _mounts_by_volume(base).values():
        if "hostPath" in volume:
            assert f"`{volume['hostPath']['path']}`" in model, volume["hostPath"]["path"]
    for fact in ("NetworkPolicy", "127.0.0.1:9400", "recursiveReadOnly", "/dev/shm", "runtime-aware"):
        assert fact in model, fact


def test_image_runs_the_console_script(base: list[Manifest]) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    container = _container(base)

    assert container["command"][0] in scripts
    assert container["image"].startswith("cdi-fuse:")


# --- overlays and components ------------------------------------------------------------------------


def test_default_overlay_is_the_base(base: list[Manifest]) -> None:
    assert _objects_diff(base, _render(DEPLOY / "overlays" / "default")) == {}


def test_runtime_aware_overlay_adds_only_the_runtime_sockets(base: list[Manifest]) -> None:
    rendered = _render(DEPLOY / "overlays" / "runtime-aware")
    changed = {path.split(":", 1)[1].split("/[")[0] if "/[" in path else path for path in _objects_diff(base, rendered)}

    endpoints = _option(_container(rendered)["args"], "--runtime-endpoint")
    assert endpoints == ["unix:///run/containerd/containerd.sock", "unix:///run/crio/crio.sock"]
    assert _container(rendered)["args"][: len(_container(base)["args"])] == _container(base)["args"]
    for endpoint in endpoints:
        assert endpoint is not None
        # read-only, which does not stop connect(2): the README and the patch say so
        assert _host_path_for(rendered, endpoint.removeprefix("unix://")) == (endpoint.removeprefix("unix://"), True)
    mounts = _mounts_by_volume(rendered)
    for name in ("containerd-run", "crio-run"):
        # no `type`: a node running the other runtime must not leave the pod Pending
        assert "type" not in mounts[name][0]["hostPath"], name
    assert set(mounts) - set(_mounts_by_volume(base)) == {"containerd-run", "crio-run"}
    assert changed == {
        "spec/template/spec/containers",
        "spec/template/spec/volumes",
    }, changed


def test_the_runtime_socket_risk_is_stated_next_to_the_mount_and_in_the_readme() -> None:
    patch = (COMPONENTS / "runtime-socket" / "runtime-socket.yaml").read_text()
    comment_before_mount = patch[: patch.index("- name: containerd-run")]
    assert "RISK" in comment_before_mount and "root on the node" in comment_before_mount
    assert "connect(2)" in comment_before_mount
    readme = README.read_text()
    section = readme[readme.index("### Runtime-aware auto") :]
    section = section[: section.index("\n### ", 1)]
    for fact in ("overlays/runtime-aware", "node root", "read-only", "privileged container"):
        assert fact in section, fact


def test_metrics_component_opens_port_9400_to_labelled_namespaces_only(base: list[Manifest], tmp_path: Path) -> None:
    rendered = _with_components(tmp_path, "metrics-endpoint")
    container = _container(rendered)
    policies = {p["metadata"]["name"]: p for p in rendered if p["kind"] == "NetworkPolicy"}

    assert _option(container["args"], "--metrics-address") == ["0.0.0.0:9400"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    # the probes still use the loopback address, which 0.0.0.0 includes
    assert _probe(container, "readinessProbe") == _probe(_container(base), "readinessProbe")
    assert set(policies) == {"cdi-fuse-device-plugin", "cdi-fuse-metrics"}
    metrics_policy = policies["cdi-fuse-metrics"]
    assert metrics_policy["metadata"]["namespace"] == NAMESPACE
    assert metrics_policy["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"cdi-fuse.io/scrape-metrics": "true"}}}],
            "ports": [{"protocol": "TCP", "port": "metrics"}],
        }
    ]
    assert "egress" not in metrics_policy["spec"] and metrics_policy["spec"]["policyTypes"] == ["Ingress"]


def test_components_compose_with_the_distribution_overlays(tmp_path: Path) -> None:
    """e.g. MicroK8s with runtime-aware auto and metrics: components add up without conflicts."""
    rendered = _with_components(
        tmp_path, "runtime-socket", "metrics-endpoint", resources=(DEPLOY / "overlays" / "microk8s",)
    )
    args = _container(rendered)["args"]

    assert _option(args, "--runtime-endpoint") and _option(args, "--metrics-address") == ["0.0.0.0:9400"]
    volumes = _mounts_by_volume(rendered)
    assert volumes["device-plugins"][0]["hostPath"]["path"].startswith("/var/snap/microk8s/")


def test_microk8s_overlay_moves_only_the_kubelet_dir(base: list[Manifest]) -> None:
    assert _objects_diff(base, _render(DEPLOY / "overlays" / "microk8s")) == {
        "DaemonSet/cdi-fuse:spec/template/spec/volumes/[device-plugins]/hostPath/path": (
            "/var/lib/kubelet/device-plugins",
            "/var/snap/microk8s/common/var/lib/kubelet/device-plugins",
        ),
    }


def test_legacy_aliases_overlay_adds_only_resource_names(base: list[Manifest]) -> None:
    rendered = _render(DEPLOY / "overlays" / "legacy-aliases")
    before, after = _container(base)["args"], _container(rendered)["args"]

    assert after[: len(before)] == before
    assert after[len(before) :] == [
        f"--resource-name={RESOURCE}",
        "--resource-name=github.com/fuse",
        "--resource-name=squat.ai/fuse",
        "--resource-name=smarter-devices/fuse",
    ]
    changed = {path.rpartition("/")[0] for path in _objects_diff(base, rendered)}
    assert changed == {"DaemonSet/cdi-fuse:spec/template/spec/containers/[cdi-fuse]/args"}


def test_patch_test_operations_guard_index_paths(tmp_path: Path) -> None:
    """A base whose arguments were reordered makes the metrics component fail instead of patching the wrong one."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    daemonset = tmp_path / "deploy" / "base" / "daemonset.yaml"
    obj = yaml.safe_load(daemonset.read_text())
    obj["spec"]["template"]["spec"]["containers"][0]["args"].reverse()
    daemonset.write_text(yaml.safe_dump(obj))
    work = tmp_path / "deploy" / "overlays" / "metrics"
    work.mkdir()
    (work / "kustomization.yaml").write_text(
        "resources: [../../base]\ncomponents: [../../components/metrics-endpoint]\n"
    )

    assert "testing" in kustomize.build_error(work) or "test" in kustomize.build_error(work)


# --- examples ---------------------------------------------------------------------------------------


def _example_pods() -> list[Any]:
    cases = []
    for example in EXAMPLES:
        for doc in yaml.safe_load_all(example.read_text()):
            if doc["kind"] == "Pod":
                cases.append(pytest.param(example, doc, id=example.stem))
    return cases


@pytest.mark.parametrize(("example", "pod"), _example_pods())
def test_example_requests_fuse_without_privilege(example: Path, pod: Manifest) -> None:
    for container in pod["spec"]["containers"]:
        security = container["securityContext"]
        assert container["resources"]["limits"] == {RESOURCE: 1}
        assert security["capabilities"]["add"] == ["SYS_ADMIN"]
        assert security.get("privileged", False) is False
        # The plain variant names no AppArmor profile: a node without AppArmor rejects pods that do.
        assert "appArmorProfile" not in security
    assert "appArmorProfile" not in pod["spec"].get("securityContext", {})
    assert not any(key.startswith("container.apparmor") for key in pod["metadata"].get("annotations", {}))
    for container in pod["spec"].get("initContainers", []):
        assert "securityContext" not in container or not container["securityContext"].get("privileged")
        assert RESOURCE not in container.get("resources", {}).get("limits", {})


def test_the_plain_variant_lists_every_example() -> None:
    kustomization = yaml.safe_load((EXAMPLE_PODS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in EXAMPLES]


def test_the_apparmor_variant_puts_every_pod_under_the_cdi_fuse_profile() -> None:
    kustomization = yaml.safe_load((APPARMOR_VARIANT / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../pods"]
    (patch,) = kustomization["patches"]
    assert patch["target"] == {"kind": "Pod"}
    assert yaml.safe_load(patch["patch"])["spec"] == {"securityContext": {"appArmorProfile": APPARMOR_PROFILE}}
    pods = [doc for doc in kustomize.build(APPARMOR_VARIANT) if doc["kind"] == "Pod"]
    assert len(pods) == len(_example_pods())
    for pod in pods:
        assert pod["spec"]["securityContext"]["appArmorProfile"] == APPARMOR_PROFILE, pod["metadata"]["name"]


def test_non_root_example_relies_on_setuid_fusermount3() -> None:
    pod = yaml.safe_load((EXAMPLE_PODS / "non-root.yaml").read_text())
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["capabilities"]["add"] == ["SYS_ADMIN"]
    assert "allowPrivilegeEscalation" not in container["securityContext"]


def test_user_namespace_example_runs_without_host_users() -> None:
    pod = yaml.safe_load((EXAMPLE_PODS / "user-namespaces.yaml").read_text())
    text = (EXAMPLE_PODS / "user-namespaces.yaml").read_text()

    assert pod["spec"]["hostUsers"] is False
    for fact in ("1.30", "4.18", "6.3", "0666"):
        assert fact in text, fact


def test_examples_readme_covers_every_example() -> None:
    readme = (REPO / "examples" / "README.md").read_text()

    for example in EXAMPLES:
        assert f"(pods/{example.name})" in readme, example.name
    assert "(apparmor/cdi-fuse)" in readme
    assert "kubectl apply -k examples/apparmor" in readme


# --- Containerfile ----------------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "dangling line continuation"
    return instructions


def test_containerfile_builds_a_wheel_then_a_slim_runtime_image() -> None:
    instructions = _instructions(CONTAINERFILE.read_text())
    stages = [arguments for keyword, arguments in instructions if keyword == "FROM"]

    assert stages == ["python:3.11-slim AS build", "python:3.11-slim"]
    assert instructions[0][0] == "FROM"
    runs = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    assert any("pip wheel" in run and "--no-cache-dir" in run for run in runs)
    assert any("pip install --no-cache-dir" in run for run in runs)


def test_containerfile_copies_only_files_that_exist() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied: set[str] = set()
    for keyword, arguments in _instructions(CONTAINERFILE.read_text()):
        if keyword == "COPY" and not arguments.startswith("--from="):
            *sources, _ = arguments.split()
            copied |= set(sources)

    for source in copied:
        assert (REPO / source).exists(), source
    # setuptools needs the readme named in pyproject to build the wheel
    assert {"pyproject.toml", pyproject["project"]["readme"], "cdi_fuse"} <= {s.rstrip("/") for s in copied}


def test_containerfile_entrypoint_is_the_console_script_running_the_plugin() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    instructions = dict(_instructions(CONTAINERFILE.read_text()))

    entrypoint = json.loads(instructions["ENTRYPOINT"])
    assert entrypoint == ["cdi-fuse"]
    assert entrypoint[0] in scripts
    assert json.loads(instructions["CMD"]) == ["plugin"]
    assert instructions["USER"] == "0:0"


def test_containerfile_explains_why_it_runs_as_root() -> None:
    text = CONTAINERFILE.read_text()

    for reason in ("/etc/cdi", "device-plugins", "kubelet.sock", "drops ALL capabilities"):
        assert reason in text, reason
