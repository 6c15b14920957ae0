"""`cdi-fuse doctor`: can this node give unprivileged pods FUSE, and if not, what to do.

Sits above deviceplugin and runtime (which do not import each other): it joins their answers.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from cdi_fuse import defaults, errors
from cdi_fuse.cdi import compat, store
from cdi_fuse.cdi import report as spec_report
from cdi_fuse.deviceplugin import decider, endpoint
from cdi_fuse.node import fuse
from cdi_fuse.runtime import cri

__all__ = [
    "Check",
    "DoctorOptions",
    "ExamplesVariant",
    "Report",
    "examples_variant",
    "run_doctor",
    "spec_version_warning",
]

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    strategy: str = ""
    strategy_reason: str = ""

    @property
    def blocking(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": not self.blocking,
            "checks": [asdict(c) for c in self.checks],
            "strategy": {"auto": self.strategy, "reason": self.strategy_reason},
        }


@dataclass(frozen=True)
class DoctorOptions:
    device_path: Path = defaults.DEVICE_PATH
    proc_filesystems: Path = defaults.PROC_FILESYSTEMS
    qualified_name: str = f"{defaults.VENDOR}/{defaults.CLASS}={defaults.DEVICE_NAME}"
    spec_dirs: Sequence[Path] = defaults.SPEC_DIRS
    runtime_endpoints: Sequence[str] = defaults.RUNTIME_ENDPOINTS
    device_plugin_dir: Path = defaults.PLUGIN_DIR
    sys_root: Path = defaults.SYS_ROOT
    runtime_timeout: float = defaults.RUNTIME_TIMEOUT_S
    dra_driver: str = defaults.DRA_DRIVER
    dra_registry_dir: Path = defaults.DRA_REGISTRY_DIR
    dra_plugins_dir: Path = defaults.DRA_PLUGINS_DIR
    # Ask the API server whether it serves resource.k8s.io/v1: with this kubeconfig, or (None) with the
    # pod's service account / $KUBECONFIG when there is one.
    kubeconfig: Path | None = None
    ask_api: bool = True


def _kernel(options: DoctorOptions) -> Check:
    if fuse.fuse_in_kernel(options.proc_filesystems):
        return Check("kernel", "ok", f"'fuse' is listed in {options.proc_filesystems}")
    return Check(
        "kernel", "fail", f"'fuse' is not listed in {options.proc_filesystems}", "load it with `modprobe fuse`"
    )


# What hostUsers: false pods need from the node, beyond a runtime handler that says it can run them.
_USERNS_NEEDS = (
    "user-namespaced pods need containerd >= 2.0 or CRI-O >= 1.25 with an OCI runtime that does idmap mounts "
    "(runc >= 1.2, crun >= 1.9), Linux >= 6.3 and Kubernetes >= 1.30; other pods are not affected"
)


def _userns_support(view: cri.RuntimeInfo | None) -> tuple[bool | None, str]:
    """Whether this node's runtime can run pods with hostUsers: false (None: cannot tell), and what it said."""
    if view is None:
        return None, "the runtime could not be asked whether it runs user-namespaced pods"
    handler = view.default_handler
    if handler is None:
        return False, (
            f"{view.description} reports no runtime handler features (CRI of Kubernetes 1.30+), so it cannot run "
            "user-namespaced pods (hostUsers: false) the way Kubernetes runs them"
        )
    which = f"runtime handler {handler.name!r}" if handler.name else "default runtime handler"
    can = "can" if handler.user_namespaces else "cannot"
    return handler.user_namespaces, f"{view.description}: its {which} {can} run user-namespaced pods (hostUsers: false)"


def _userns(view: cri.RuntimeInfo | None) -> Check:
    supported, detail = _userns_support(view)
    if supported:
        return Check("userns", "ok", f"{detail} (kernel {platform.release()})")
    return Check("userns", "warn", f"{detail} (kernel {platform.release()})", _USERNS_NEEDS)


def _device(options: DoctorOptions, view: cri.RuntimeInfo | None) -> tuple[Check, fuse.FuseDevice | None]:
    try:
        device = fuse.probe_fuse(options.device_path, proc_filesystems=options.proc_filesystems)
        fuse.validate_fuse_numbers(device, sys_root=options.sys_root)
    except errors.DeviceProbeError as exc:
        return Check("device", "fail", str(exc), exc.hint), None
    detail = (
        f"{device.path}: char {device.major}:{device.minor}, mode {device.mode:04o}, owner {device.uid}:{device.gid}"
    )
    if not device.others_can_open:
        supported, userns = _userns_support(view)
        affected = {
            True: "so FUSE pods with hostUsers: false will fail here",
            False: "no pod is affected yet",
            None: "",
        }[supported]
        return (
            Check(
                "device",
                "warn",
                f"{detail}: pods with hostUsers: false (user namespaces) cannot open it, since container root is "
                f"not the node's owner there ({userns}{'; ' + affected if affected else ''})",
                'make it 0666 for good with a udev rule, e.g. KERNEL=="fuse", MODE="0666" in '
                "/etc/udev/rules.d/99-fuse.rules, or until reboot with `chmod 0666 /dev/fuse`. 0666 lets every "
                "process on the node open /dev/fuse (Debian's default); mounting still needs CAP_SYS_ADMIN in the "
                "mount's user namespace or the setuid fusermount3",
            ),
            device,
        )
    return Check("device", "ok", detail), device


def _specs(options: DoctorOptions, dirs: Sequence[Path], label: str) -> Check:
    registry = store.scan_spec_dirs(dirs)
    where = ", ".join(str(d) for d in dirs)
    name = options.qualified_name
    bad = "; ".join(f"{p}: {e}" for p, e in sorted(registry.spec_errors.items()))
    if name in registry.conflicts:
        paths = ", ".join(str(p) for p in registry.conflicts[name])
        return Check(label, "fail", f"{name} is defined twice ({paths})", "remove one of the files")
    found = registry.resolve(name)
    if found is None:
        return Check(
            label,
            "warn",
            f"{name} is not provided by {where}" + (f"; invalid specs: {bad}" if bad else ""),
            "run `cdi-fuse generate` (or the plugin with --generate); without a spec only device-spec works",
        )
    status: Status = "warn" if bad else "ok"
    return Check(label, status, f"{name} resolves to {found.path}" + (f"; invalid specs: {bad}" if bad else ""))


def _runtime(options: DoctorOptions) -> tuple[Check, cri.RuntimeInfo | None, errors.CdiFuseError | None]:
    try:
        view = cri.RuntimeProbe(options.runtime_endpoints, timeout=options.runtime_timeout)()
    except errors.CdiFuseError as exc:
        return (
            Check("runtime", "warn", f"cannot ask the runtime over CRI: {exc}", "pass --runtime-endpoint"),
            None,
            exc,
        )
    dirs = ", ".join(view.cdi_spec_dirs) or "none"
    if view.cdi_enabled:
        return Check("runtime", "ok", f"{view.description}: CDI enabled, spec dirs {dirs} ({view.reason})"), view, None
    return (
        Check(
            "runtime",
            "warn",
            f"{view.description}: CDI disabled ({view.reason})",
            "enable it with `cdi-fuse runtime-config containerd --apply` (or crio); device-spec works meanwhile",
        ),
        view,
        None,
    )


def _kubelet(options: DoctorOptions) -> Check:
    directory = options.device_plugin_dir
    if not directory.is_dir():
        return Check(
            "kubelet", "warn", f"{directory} does not exist", "is this a Kubernetes node? pass --device-plugin-dir"
        )
    sock = directory / endpoint.KUBELET_SOCKET
    if not sock.exists():
        return Check("kubelet", "warn", f"{sock} is missing: the kubelet is not running", "start the kubelet")
    return Check("kubelet", "ok", f"{sock} present")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


SELINUX_FUSE_BOOLEAN = "virt_sandbox_use_fusefs"
APPARMOR_PROFILE = "cdi-fuse"


@dataclass(frozen=True)
class ExamplesVariant:
    """Which variant of examples/ FUSE pods need on a node, and what the node itself needs for it."""

    directory: str  # examples/pods or examples/apparmor
    needs: str  # what to do on the node first, "" when nothing
    ready: bool  # False when the node setting is known to be missing


def examples_variant(sys_root: Path) -> ExamplesVariant:
    """AppArmor nodes reject plain FUSE pods' mounts (the runtime's default profile denies mount) and
    plain nodes reject pods that name an AppArmor profile, so the variant follows the LSM in force.
    SELinux needs no pod change: container-selinux lets ``container_t`` mount fusefs once its boolean
    ``virt_sandbox_use_fusefs`` is on."""
    if _read(sys_root / "module/apparmor/parameters/enabled") == "Y":
        loaded = _read(sys_root / "kernel/security/apparmor/profiles")
        has_profile = loaded is not None and any(
            line.split(" (")[0] == APPARMOR_PROFILE for line in loaded.splitlines()
        )
        needs = (
            "" if has_profile else "load the profile on the node: apparmor_parser --replace examples/apparmor/cdi-fuse"
        )
        # Unreadable profile list (not root, or /sys/kernel/security not mounted): cannot tell, so no warning.
        return ExamplesVariant("examples/apparmor", needs, ready=has_profile or loaded is None)
    if _read(sys_root / "fs/selinux/enforce") == "1":
        boolean = _read(sys_root / "fs/selinux/booleans" / SELINUX_FUSE_BOOLEAN)
        enabled = boolean is not None and boolean.split()[:1] == ["1"]
        needs = "" if enabled else f"setsebool -P {SELINUX_FUSE_BOOLEAN} on"
        return ExamplesVariant("examples/pods", needs, ready=enabled)
    return ExamplesVariant("examples/pods", "", ready=True)


def _lsm(options: DoctorOptions) -> Check:
    apparmor = _read(options.sys_root / "module/apparmor/parameters/enabled")
    selinux = _read(options.sys_root / "fs/selinux/enforce")
    parts = [
        "AppArmor " + ("enabled" if apparmor == "Y" else "disabled" if apparmor else "absent"),
        "SELinux " + ({"1": "enforcing", "0": "permissive"}.get(selinux or "", "absent")),
    ]
    variant = examples_variant(options.sys_root)
    detail = ", ".join(parts) + f"; FUSE pods: the {variant.directory} variant"
    return Check("security", "ok" if variant.ready else "warn", detail, variant.needs)


def _dra_driver(options: DoctorOptions) -> Check:
    from cdi_fuse.dra import api as dra_api
    from cdi_fuse.dra import status

    socket = options.dra_registry_dir / dra_api.registration_socket_name(options.dra_driver)
    if not socket.exists():
        return Check(
            "dra driver",
            "ok",
            f"no DRA driver {options.dra_driver} on this node ({socket} absent)",
            "only needed for ResourceClaims: deploy plugin/deploy/overlays/dra (`cdi-fuse dra`)",
        )
    try:
        info = status.query_registration(socket, timeout=options.runtime_timeout)
    except errors.RegistrationError as exc:
        return Check("dra driver", "warn", str(exc), "is `cdi-fuse dra` running? a stale socket is left otherwise")
    served = f"{info.type} {info.name} serves {socket} (endpoint {info.endpoint}, {', '.join(info.supported_versions)})"
    recorded = status.read_status(options.dra_plugins_dir / info.name / status.STATUS_FILE)
    if recorded is None:
        return Check("dra driver", "warn", f"{served}; the kubelet has not registered it", "is the kubelet running?")
    if not recorded.registered:
        return Check("dra driver", "warn", f"{served}; the kubelet refused it: {recorded.error}")
    return Check("dra driver", "ok", f"{served}; registered by the kubelet")


def _dra_api(options: DoctorOptions) -> Check | None:
    if not options.ask_api:
        return None
    if options.kubeconfig is None and not (os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG")):
        return Check("dra api", "ok", "not asked: no kubeconfig", "pass --kubeconfig to check resource.k8s.io/v1")
    from cdi_fuse.dra import kube

    try:
        versions = kube.KubeApi(kube.load_client(options.kubeconfig), timeout=options.runtime_timeout).served_versions()
    except errors.ApiServerError as exc:
        return Check("dra api", "warn", f"cannot ask the API server: {exc}")
    if "v1" in versions:
        return Check("dra api", "ok", f"resource.k8s.io/v1 is served ({', '.join(versions)})")
    if versions:
        return Check(
            "dra api",
            "warn",
            f"resource.k8s.io serves only {', '.join(versions)}",
            "`cdi-fuse dra` needs resource.k8s.io/v1 (Kubernetes 1.34+); use `cdi-fuse plugin` here",
        )
    return Check("dra api", "warn", "resource.k8s.io is not served", "use `cdi-fuse plugin` on this cluster")


def _runtime_library(description: str, dirs: Sequence[Path]) -> Check:
    """Can the runtime's own CDI library (by the release it reports) load the specs in its dirs?"""
    runtime = compat.reported_runtime_library(description)
    if runtime is None:
        return Check("runtime library", "ok", f"{description}: no CDI library version on record; specs not judged")
    refusals = spec_report.runtime_refusals(runtime, dirs)
    where = ", ".join(str(d) for d in dirs) or "no spec dirs"
    if not refusals:
        return Check("runtime library", "ok", f"{runtime.label} loads every valid spec in {where}")
    crashes = [r for r in refusals if r.crashes]
    if crashes:
        return Check(
            "runtime library",
            "fail",
            f"{runtime.label} crashes on {'; '.join(map(str, crashes))}",
            "remove or fix the file: the runtime fails to start (or loses every CDI device) with it in its dirs",
        )
    return Check(
        "runtime library",
        "warn",
        f"{runtime.label} cannot load {'; '.join(map(str, refusals))}",
        f"its library knows cdiVersion up to {runtime.library.max_cdi_version}: regenerate with "
        f"`cdi-fuse generate --spec-version {runtime.library.max_cdi_version}` (or let it pick the minimum)",
    )


def spec_version_warning(cdi_version: str, endpoints: Sequence[str], *, timeout: float = 1.0) -> str | None:
    """A warning when the node's runtime (asked over CRI) bundles a CDI library that does not load `cdi_version`;
    None when it does, when its release is not on record, or when no runtime answers."""
    try:
        info = cri.probe_runtime(endpoints, timeout=timeout)
    except errors.CdiFuseError:
        return None
    runtime = compat.reported_runtime_library(f"{info.runtime_name} {info.runtime_version}")
    if runtime is None or compat.loads_version(runtime.library, cdi_version):
        return None
    newest = runtime.library.max_cdi_version
    return (
        f"{runtime.label} does not load cdiVersion {cdi_version} (its library knows versions up to {newest}): "
        f"containers asking for the device fail with 'unresolvable CDI devices'; use --spec-version {newest} "
        "or leave the option out"
    )


def run_doctor(options: DoctorOptions) -> Report:
    """Check kernel, device, specs, runtime, kubelet and LSMs; say which strategy `auto` would pick."""
    report = Report()
    runtime_check, view, error = _runtime(options)
    report.checks.append(_kernel(options))
    device_check, _ = _device(options, view)
    report.checks.append(device_check)
    report.checks.append(_specs(options, options.spec_dirs, "spec"))
    report.checks.append(runtime_check)
    report.checks.append(_userns(view))
    runtime_dirs = tuple(Path(d) for d in view.cdi_spec_dirs) if view is not None else ()
    if view is not None and view.cdi_enabled and runtime_dirs != tuple(options.spec_dirs):
        report.checks.append(_specs(options, runtime_dirs, "runtime spec dirs"))
    if view is not None and view.cdi_enabled:
        report.checks.append(_runtime_library(view.description, runtime_dirs))
    report.checks.append(_kubelet(options))
    report.checks.append(_dra_driver(options))
    api_check = _dra_api(options)
    if api_check is not None:
        report.checks.append(api_check)
    report.checks.append(_lsm(options))
    decision = decider.decide_auto(
        view, error, options.qualified_name, fallback_spec_dirs=options.spec_dirs, read=decider.reader_for(view)
    )
    report.strategy, report.strategy_reason = decision.label, decision.reason
    return report
