"""Deployment manifests, examples and the Containerfile.

The overlays are rendered by `_render`, a small kustomize for exactly the features plugin/deploy uses
(resources, namespace, JSON 6902 patches with a target); anything else makes it fail, so the overlays
cannot drift into what it does not understand. Where a real kustomize (`kustomize` or
`kubectl kustomize`) is installed, its output is compared with ours.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "plugin" / "deploy"
BASE = DEPLOY / "base"
OVERLAYS = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CONTAINERFILE = REPO / "plugin" / "Containerfile"
MIN_KUBERNETES = (1, 30)
NAMESPACE = "cdi-fuse-system"
RESOURCE = "cdi-fuse.io/fuse"

Manifest = dict[str, Any]


# --- a kustomize for what plugin/deploy uses -----------------------------------------------------------

_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources", "patches"}
_CLUSTER_SCOPED = {"Namespace"}
# resource.k8s.io/v1 (the DRA overlay and examples) exists from Kubernetes 1.34.
_MIN_VERSION_OF_GROUP = {"resource.k8s.io/v1": (1, 34)}


class UnsupportedKustomization(Exception):
    pass


def _render(directory: Path) -> list[Manifest]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _KUSTOMIZATION_KEYS
    if unknown:
        raise UnsupportedKustomization(f"{directory}: {sorted(unknown)}")
    objects: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            objects += _render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for patch in kustomization.get("patches", []):
        if set(patch) - {"path", "target"} or "target" not in patch:
            raise UnsupportedKustomization(f"{directory}: patch {patch!r}")
        operations = yaml.safe_load((directory / patch["path"]).read_text())
        if not isinstance(operations, list):
            raise UnsupportedKustomization(f"{directory}: {patch['path']} is not a JSON 6902 patch")
        matched = [obj for obj in objects if _matches(obj, patch["target"])]
        if not matched:
            raise UnsupportedKustomization(f"{directory}: target {patch['target']!r} matches nothing")
        for obj in matched:
            for operation in operations:
                _apply_operation(obj, operation)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] in _CLUSTER_SCOPED:
                if obj["kind"] == "Namespace":
                    obj["metadata"]["name"] = kustomization["namespace"]
            else:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def _matches(obj: Manifest, target: dict[str, str]) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    actual = {"group": group, "version": version, "kind": obj["kind"], "name": obj["metadata"]["name"]}
    unknown = set(target) - set(actual)
    if unknown:
        raise UnsupportedKustomization(f"target selector {sorted(unknown)}")
    return all(actual[key] == value for key, value in target.items())


def _apply_operation(obj: Manifest, operation: dict[str, Any]) -> None:
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in operation["path"].split("/")[1:]]
    parent: Any = obj
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    op = operation["op"]
    if op == "test":
        current = parent[int(last)] if isinstance(parent, list) else parent[last]
        assert current == operation["value"], f"JSON patch test failed: {operation!r}, found {current!r}"
    elif op == "add" and isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(operation["value"]))
    elif op in ("add", "replace"):
        if isinstance(parent, list):
            index = int(last)
            if not -len(parent) <= index < len(parent):
                raise IndexError(f"{op} of missing {operation['path']!r}")
            parent[index] = copy.deepcopy(operation["value"])
        else:
            if op == "replace" and last not in parent:
                raise KeyError(f"replace of missing {operation['path']!r}")
            parent[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del parent[int(last) if isinstance(parent, list) else last]
    else:
        raise UnsupportedKustomization(f"JSON patch op {op!r}")


def _kustomize_command() -> list[str] | None:
    if binary := shutil.which("kustomize"):
        return [binary, "build"]
    if binary := shutil.which("kubectl"):
        return [binary, "kustomize"]
    return None


# --- helpers ----------------------------------------------------------------------------------------


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


def _diff(before: Manifest, after: Manifest) -> dict[str, tuple[Any, Any]]:
    old, new = dict(_leaves(before)), dict(_leaves(after))
    return {
        "/".join(path): (old.get(path), new.get(path))
        for path in old.keys() | new.keys()
        if old.get(path) != new.get(path)
    }


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


def _all_manifests() -> list[Any]:
    cases = [pytest.param(BASE, id="base")]
    cases += [pytest.param(DEPLOY / "overlays" / name, id=f"overlay-{name}") for name in OVERLAYS]
    return cases


def _documents() -> Iterator[tuple[str, Manifest]]:
    for directory in [BASE, *(DEPLOY / "overlays" / name for name in OVERLAYS)]:
        for obj in _render(directory):
            yield f"{directory.relative_to(REPO)}:{obj['kind']}/{obj['metadata']['name']}", obj
    for example in EXAMPLES:
        for obj in yaml.safe_load_all(example.read_text()):
            yield f"{example.relative_to(REPO)}:{obj['kind']}/{obj['metadata']['name']}", obj


# --- schema validation ------------------------------------------------------------------------------


def test_the_expected_overlays_and_examples_exist() -> None:
    assert OVERLAYS == ["default", "dra", "legacy-aliases", "microk8s"]
    assert [p.name for p in EXAMPLES] == [
        "bindfs.yaml",
        "buildah.yaml",
        "rclone.yaml",
        "sshfs.yaml",
        "user-namespaces.yaml",
    ]


@pytest.mark.parametrize("version", _kubernetes_versions())
def test_every_manifest_validates_strictly(version: str) -> None:
    documents = list(_documents())
    assert len(documents) >= 2 * (1 + len(OVERLAYS)) + len(EXAMPLES)
    failures = []
    for name, obj in documents:
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


@pytest.fixture(scope="module")
def base() -> list[Manifest]:
    return _render(BASE)


def test_namespace_and_daemonset_land_in_cdi_fuse_system(base: list[Manifest]) -> None:
    assert _only(base, "Namespace")["metadata"]["name"] == NAMESPACE
    assert _only(base, "DaemonSet")["metadata"]["namespace"] == NAMESPACE
    # hostPath volumes are what needs the privileged Pod Security level; nothing else does
    labels = _only(base, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_container_is_root_without_any_privilege(base: list[Manifest]) -> None:
    security = _container(base)["securityContext"]

    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in security["capabilities"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["runAsUser"] == 0


def test_pod_shares_nothing_with_the_host_but_its_volumes(base: list[Manifest]) -> None:
    pod = _only(base, "DaemonSet")["spec"]["template"]["spec"]

    assert pod["hostNetwork"] is False
    for field in ("hostPID", "hostIPC", "shareProcessNamespace"):
        assert field not in pod
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert len(pod["containers"]) == 1
    assert "initContainers" not in pod


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
    assert resources["requests"] == {"cpu": "10m", "memory": "64Mi"}
    assert resources["limits"] == {"cpu": "200m", "memory": "128Mi"}


def test_probes_hit_healthz_on_the_metrics_port(base: list[Manifest]) -> None:
    container = _container(base)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    (address,) = _option(container["args"], "--metrics-address")
    assert address is not None
    host, _, port = address.rpartition(":")

    # the kubelet probes the pod IP, so the server must listen on every pod address
    assert host == "0.0.0.0"
    assert ports == {"metrics": int(port)}
    # readiness follows registration + device health; liveness only asks whether the process answers
    for probe, path in (("readinessProbe", "/healthz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports[get["port"]] == int(port), probe
        assert "host" not in get, probe


def test_plugin_arguments(base: list[Manifest]) -> None:
    container = _container(base)

    assert container["command"] == ["cdi-fuse", "plugin"]
    assert _option(container["args"], "--generate") == [None]
    assert _option(container["args"], "--resource-name") == [], "base advertises the default name only"
    endpoints = _option(container["args"], "--runtime-endpoint")
    assert endpoints == ["unix:///run/containerd/containerd.sock", "unix:///run/crio/crio.sock"]


def _mounts_by_volume(objects: list[Manifest]) -> dict[str, tuple[Manifest, Manifest]]:
    pod = _only(objects, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount for mount in pod["containers"][0]["volumeMounts"]}
    assert volumes.keys() == mounts.keys(), "every volume is mounted, every mount has a volume"
    return {name: (volumes[name], mounts[name]) for name in volumes}


def _host_path_for(objects: list[Manifest], container_path: str) -> tuple[str, bool]:
    """The host path behind a path inside the container, and whether it is mounted read-only."""
    best: tuple[str, Manifest, Manifest] | None = None
    for volume, mount in _mounts_by_volume(objects).values():
        prefix = mount["mountPath"].rstrip("/") + "/"
        on_mount = "hostPath" in volume and (container_path + "/").startswith(prefix)
        if on_mount and (best is None or len(prefix) > len(best[0])):
            best = (prefix, volume, mount)
    assert best is not None, f"{container_path!r} is on no hostPath mount"
    prefix, volume, mount = best
    host = volume["hostPath"]["path"].rstrip("/") + "/" + container_path[len(prefix) :]
    return host.rstrip("/"), bool(mount.get("readOnly", False))


def test_host_dev_is_mounted_read_only_and_the_device_path_is_on_it(base: list[Manifest]) -> None:
    volume, mount = _mounts_by_volume(base)["host-dev"]
    (device_path,) = _option(_container(base)["args"], "--device-path")
    assert device_path is not None

    assert volume["hostPath"] == {"path": "/dev", "type": "Directory"}
    assert mount["mountPath"] == "/host/dev"
    assert mount["readOnly"] is True
    assert _host_path_for(base, device_path) == ("/dev/fuse", True)


def test_writable_mounts_are_only_the_spec_dirs_device_plugins_and_tmp(base: list[Manifest]) -> None:
    writable = {
        name: (volume.get("hostPath", {}).get("path"), mount["mountPath"])
        for name, (volume, mount) in _mounts_by_volume(base).items()
        if not mount.get("readOnly", False)
    }

    assert writable == {
        "cdi-static": ("/etc/cdi", "/etc/cdi"),
        "cdi-dynamic": ("/var/run/cdi", "/var/run/cdi"),
        "device-plugins": ("/var/lib/kubelet/device-plugins", "/var/lib/kubelet/device-plugins"),
        "tmp": (None, "/tmp"),
    }
    volume, _ = _mounts_by_volume(base)["tmp"]
    assert volume["emptyDir"]["medium"] == "Memory"


def test_runtime_sockets_are_reachable_read_only_without_blocking_scheduling(base: list[Manifest]) -> None:
    mounts = _mounts_by_volume(base)
    for endpoint in _option(_container(base)["args"], "--runtime-endpoint"):
        assert endpoint is not None and endpoint.startswith("unix://")
        host_path, read_only = _host_path_for(base, endpoint.removeprefix("unix://"))
        assert read_only, endpoint
        assert host_path in {"/run/containerd/containerd.sock", "/run/crio/crio.sock"}
    for name in ("containerd-run", "crio-run"):
        # no `type`: a node running the other runtime must not leave the pod Pending
        assert "type" not in mounts[name][0]["hostPath"], name


def test_image_runs_the_console_script(base: list[Manifest]) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    container = _container(base)

    assert container["command"][0] in scripts
    assert container["image"].startswith("cdi-fuse:")


# --- overlays ---------------------------------------------------------------------------------------


def _overlay_diff(name: str) -> dict[str, tuple[Any, Any]]:
    before, after = _render(BASE), _render(DEPLOY / "overlays" / name)
    assert [(o["kind"], o["metadata"]["name"]) for o in before] == [(o["kind"], o["metadata"]["name"]) for o in after]
    diff: dict[str, tuple[Any, Any]] = {}
    for old, new in zip(before, after, strict=True):
        diff |= {f"{new['kind']}:{path}": change for path, change in _diff(old, new).items()}
    return diff


def test_default_overlay_is_the_base() -> None:
    assert _overlay_diff("default") == {}


def test_microk8s_overlay_moves_only_the_host_side_of_two_mounts() -> None:
    assert _overlay_diff("microk8s") == {
        "DaemonSet:spec/template/spec/volumes/[device-plugins]/hostPath/path": (
            "/var/lib/kubelet/device-plugins",
            "/var/snap/microk8s/common/var/lib/kubelet/device-plugins",
        ),
        "DaemonSet:spec/template/spec/volumes/[containerd-run]/hostPath/path": (
            "/run/containerd",
            "/var/snap/microk8s/common/run",
        ),
    }
    rendered = _render(DEPLOY / "overlays" / "microk8s")
    (endpoint, _) = _option(_container(rendered)["args"], "--runtime-endpoint")
    assert endpoint is not None
    assert _host_path_for(rendered, endpoint.removeprefix("unix://")) == (
        "/var/snap/microk8s/common/run/containerd.sock",
        True,
    )


def test_legacy_aliases_overlay_adds_only_resource_names() -> None:
    before = _container(_render(BASE))["args"]
    after = _container(_render(DEPLOY / "overlays" / "legacy-aliases"))["args"]

    assert after[: len(before)] == before
    assert after[len(before) :] == [
        f"--resource-name={RESOURCE}",
        "--resource-name=github.com/fuse",
        "--resource-name=squat.ai/fuse",
        "--resource-name=smarter-devices/fuse",
    ]
    changed = {path.rpartition("/")[0] for path in _overlay_diff("legacy-aliases")}
    assert changed == {"DaemonSet:spec/template/spec/containers/[cdi-fuse]/args"}


def test_patch_test_operations_guard_index_paths(tmp_path: Path) -> None:
    """A base whose volumes were reordered makes the microk8s overlay fail instead of patching the wrong one."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    daemonset = tmp_path / "deploy" / "base" / "daemonset.yaml"
    obj = yaml.safe_load(daemonset.read_text())
    obj["spec"]["template"]["spec"]["volumes"].reverse()
    daemonset.write_text(yaml.safe_dump(obj))

    with pytest.raises(AssertionError, match="JSON patch test failed"):
        _render(tmp_path / "deploy" / "overlays" / "microk8s")


def test_renderer_refuses_kustomize_features_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")

    with pytest.raises(UnsupportedKustomization, match="commonLabels"):
        _render(tmp_path)


@pytest.mark.parametrize("directory", _all_manifests())
def test_renderer_matches_real_kustomize(directory: Path) -> None:
    command = _kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: overlays checked with the test renderer only")
    result = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr

    def key(obj: Manifest) -> str:
        return json.dumps(obj, sort_keys=True)

    real = sorted((doc for doc in yaml.safe_load_all(result.stdout) if doc), key=key)
    assert real == sorted(_render(directory), key=key)


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
    text = example.read_text()
    for container in pod["spec"]["containers"]:
        security = container["securityContext"]
        assert container["resources"]["limits"] == {RESOURCE: 1}
        assert security["capabilities"]["add"] == ["SYS_ADMIN"]
        assert security.get("privileged", False) is False
        assert security["appArmorProfile"] == {"type": "Localhost", "localhostProfile": "cdi-fuse"}
        # the pre-1.30 spelling is given in a comment, for this very container
        annotation = f"container.apparmor.security.beta.kubernetes.io/{container['name']}: localhost/cdi-fuse"
        assert re.search(rf"#\s+{re.escape(annotation)}", text), annotation
    for container in pod["spec"].get("initContainers", []):
        assert "securityContext" not in container or not container["securityContext"].get("privileged")
        assert RESOURCE not in container.get("resources", {}).get("limits", {})


def test_user_namespace_example_runs_without_host_users() -> None:
    pod = yaml.safe_load((REPO / "examples" / "user-namespaces.yaml").read_text())
    text = (REPO / "examples" / "user-namespaces.yaml").read_text()

    assert pod["spec"]["hostUsers"] is False
    for fact in ("1.30", "4.18", "6.3", "0666"):
        assert fact in text, fact


def test_examples_readme_covers_every_example() -> None:
    readme = (REPO / "examples" / "README.md").read_text()

    for example in EXAMPLES:
        assert f"({example.name})" in readme, example.name
    assert "(apparmor/cdi-fuse)" in readme


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
