"""The `cdi-fuse` command line: parses options, sets up logging, calls one library function, prints.

Option defaults come from cdi_fuse.defaults. Library modules are imported inside each command, so a command
loads only what it uses (`plugin` runs for the node's lifetime: no pydantic, no jsonschema)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

import cdi_fuse
from cdi_fuse import defaults, errors

app = typer.Typer(
    name="cdi-fuse",
    help=(
        "Give unprivileged Kubernetes pods /dev/fuse: write a CDI spec for the node's FUSE device "
        "and serve it to the kubelet as a device-plugin resource."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help text: rich markup would swallow the "[default: ...]" notes in option help.
    rich_markup_mode=None,
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class SpecFormatOption(StrEnum):
    yaml = "yaml"
    json = "json"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cdi-fuse {cdi_fuse.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """cdi-fuse: /dev/fuse for unprivileged pods through CDI and a kubelet device plugin."""


def _fail(message: str, *, hint: str = "", code: int = EXIT_FAIL) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    return typer.Exit(code)


VendorOption = Annotated[str, typer.Option("--vendor", help="CDI vendor: the part before '/' in the kind.")]
ClassOption = Annotated[str, typer.Option("--class", help="CDI class: the part after '/' in the kind.")]
DeviceNameOption = Annotated[
    str, typer.Option("--device-name", help="Device name: the part after '=' in the qualified name.")
]
DevicePathOption = Annotated[
    Path, typer.Option("--device-path", help="The FUSE character device to probe on this node.", readable=False)
]
HostDevicePathOption = Annotated[
    Path | None,
    typer.Option(
        "--host-device-path",
        readable=False,
        help="Where the device is on the host, when --device-path is the host's node seen elsewhere "
        "(e.g. /host/dev/fuse in a pod) [default: --device-path].",
    ),
]
AllowOtherDeviceOption = Annotated[
    bool,
    typer.Option(
        "--allow-other-device",
        help="Hand out --device-path even when it is not the FUSE misc device (char 10:229).",
    ),
]
PermissionsOption = Annotated[
    str, typer.Option("--permissions", help="Cgroup access granted to containers: any of r, w, m.")
]


@app.command("generate")
def generate_command(
    device_path: DevicePathOption = defaults.DEVICE_PATH,
    host_device_path: HostDevicePathOption = None,
    allow_other_device: AllowOtherDeviceOption = False,
    vendor: VendorOption = defaults.VENDOR,
    cls: ClassOption = defaults.CLASS,
    device_name: DeviceNameOption = defaults.DEVICE_NAME,
    permissions: PermissionsOption = defaults.PERMISSIONS,
    fmt: Annotated[
        SpecFormatOption | None,
        typer.Option("--format", help="Spec encoding (default: from the --output extension, else yaml)."),
    ] = None,
    spec_dir: Annotated[
        Path, typer.Option("--spec-dir", help="Directory the runtime reads specs from.", readable=False)
    ] = defaults.SPEC_DIR,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Spec file to write (default: <spec-dir>/<vendor>-<class>.<ext>); '-' = stdout."
        ),
    ] = None,
    spec_version: Annotated[
        str | None,
        typer.Option("--spec-version", help="cdiVersion to declare (default: the minimum the spec needs)."),
    ] = None,
    runtime_endpoints: Annotated[
        list[str] | None,
        typer.Option(
            "--runtime-endpoint",
            help="CRI endpoint(s) asked, with --spec-version, whether the node's runtime loads that version "
            "[default: containerd, then CRI-O].",
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 if the file on disk differs from what would be written."),
    ] = False,
) -> None:
    """Probe the FUSE device and write a CDI spec for it (atomically, mode 0644).

    Prints the qualified device name (vendor/class=name) that containers then request, e.g.
    `podman run --device cdi-fuse.io/fuse=fuse` or through the `cdi-fuse plugin` resource.
    """
    from cdi_fuse.node import generate

    to_stdout = output == "-"
    options = generate.GenerateOptions(
        device_path=device_path,
        vendor=vendor,
        cls=cls,
        device_name=device_name,
        permissions=permissions,
        spec_version=spec_version,
        fmt="json" if fmt is SpecFormatOption.json else "yaml" if fmt else None,
        spec_dir=spec_dir,
        output=None if output is None or to_stdout else Path(output),
        host_device_path=host_device_path,
        allow_other_device=allow_other_device,
    )
    try:
        result = generate.generate(options, write=False) if to_stdout or check else generate.generate(options)
    except errors.DeviceProbeError as exc:
        raise _fail(str(exc), hint=exc.hint) from None
    except errors.SpecError as exc:
        raise _fail(str(exc), code=EXIT_USAGE) from None
    except errors.SpecWriteError as exc:
        raise _fail(str(exc), hint="nothing was changed on disk") from None
    if to_stdout:
        sys.stdout.write(result.content)
        return
    if check:
        path = generate.default_output(options)
        if not generate.file_matches(result.content, path):
            typer.echo(f"{path}: differs from the spec for this node (run without --check to write it)")
            raise typer.Exit(EXIT_FAIL)
        typer.echo(f"{path}: up to date")
        typer.echo(result.qualified_name)
        return
    verb = "wrote" if result.changed else "unchanged"
    typer.echo(f"{verb} {result.path}")
    typer.echo(result.qualified_name)
    if spec_version is not None:
        from cdi_fuse import doctor

        warning = doctor.spec_version_warning(spec_version, tuple(runtime_endpoints or defaults.RUNTIME_ENDPOINTS))
        if warning is not None:
            typer.echo(f"warning: {warning}", err=True)


@app.command("validate")
def validate_command(
    files: Annotated[list[Path], typer.Argument(help="CDI spec files (.json or .yaml) to check.", readable=False)],
    output: Annotated[OutputFormat, typer.Option("--output", help="Report format.")] = OutputFormat.text,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            help="Judge against the CDI library this runtime release bundles, e.g. containerd-2.1, cri-o-1.33, "
            "podman-5 [default: the newest library].",
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
) -> None:
    """Will the runtime load these CDI spec files?

    error: the runtime's CDI library refuses the file or crashes on it. warning: it loads, but breaks the JSON
    schema, depends on YAML 1.1-vs-1.2 reading, or an older runtime release refuses it.
    Exit 0 when every file is valid (warnings allowed unless --strict), 1 on errors, 2 when a file cannot be read.
    """
    from cdi_fuse.cdi import report

    try:
        reports = [report.judge_file(path, runtime=runtime) for path in files]
    except errors.SpecError as exc:
        raise _fail(str(exc), code=EXIT_USAGE) from None
    if output is OutputFormat.json:
        typer.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        for file_report in reports:
            typer.echo(report.render_text(file_report))
    worst = EXIT_OK
    if any(not r.readable for r in reports):
        worst = EXIT_USAGE
    elif any(r.errors or (strict and r.warnings) for r in reports):
        worst = EXIT_FAIL
    raise typer.Exit(worst)


@app.command("list")
def list_command(
    spec_dirs: Annotated[
        list[Path] | None,
        typer.Option(
            "--spec-dir",
            readable=False,
            help="Spec directory to scan; repeatable, later ones win (default: /etc/cdi, then /var/run/cdi).",
        ),
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--output", help="Report format.")] = OutputFormat.text,
) -> None:
    """List the qualified device names the spec directories provide.

    Like the runtimes' CDI cache: only .json/.yaml files, a bad file is reported and skipped, and a
    device defined by two files in the same directory is a conflict and not listed.
    """
    from cdi_fuse.cdi import store

    registry = store.scan_spec_dirs(tuple(spec_dirs) if spec_dirs else defaults.SPEC_DIRS)
    if output is OutputFormat.json:
        typer.echo(json.dumps(registry.as_dict(), indent=2))
        return
    if not registry.devices:
        typer.echo(f"no CDI devices in {', '.join(str(d) for d in registry.spec_dirs)}")
    width = max((len(name) for name in registry.devices), default=0)
    for device in sorted(registry.devices.values(), key=lambda d: d.qualified_name):
        typer.echo(f"{device.qualified_name:<{width}}  {device.path}")
    for name, paths in sorted(registry.conflicts.items()):
        typer.echo(f"conflict: {name} is defined by {', '.join(str(p) for p in paths)} (not provided)")
    for path, error in sorted(registry.spec_errors.items()):
        typer.echo(f"skipped {path}: {error}")


_FORWARDED = {"add_help_option": False, "context_settings": {"ignore_unknown_options": True, "allow_extra_args": True}}


@app.command("plugin", **_FORWARDED)  # type: ignore[arg-type]
def plugin_command(ctx: typer.Context) -> None:
    """Run the kubelet device plugin that advertises /dev/fuse as a shareable resource (see --help).

    Its options are parsed by cdi_fuse.plugin_command (argparse): the long-running process stays lean.
    """
    from cdi_fuse import plugin_command as command

    raise typer.Exit(command.main(ctx.args))


@app.command("dra", **_FORWARDED)  # type: ignore[arg-type]
def dra_command(ctx: typer.Context) -> None:
    """Run the DRA kubelet plugin that hands out /dev/fuse through ResourceClaims (see --help).

    Its options are parsed by cdi_fuse.dra_command (argparse): the long-running process stays lean.
    """
    from cdi_fuse import dra_command as command

    raise typer.Exit(command.main(ctx.args))


@app.command("doctor")
def doctor_command(
    device_path: DevicePathOption = defaults.DEVICE_PATH,
    vendor: VendorOption = defaults.VENDOR,
    cls: ClassOption = defaults.CLASS,
    device_name: DeviceNameOption = defaults.DEVICE_NAME,
    spec_dirs: Annotated[
        list[Path] | None,
        typer.Option("--spec-dir", help="Spec dirs to look in [default: /etc/cdi, /var/run/cdi].", readable=False),
    ] = None,
    runtime_endpoints: Annotated[
        list[str] | None,
        typer.Option("--runtime-endpoint", help="CRI endpoint(s) to ask [default: containerd, then CRI-O]."),
    ] = None,
    device_plugin_dir: Annotated[
        Path, typer.Option("--device-plugin-dir", help="The kubelet's device-plugin socket directory.", readable=False)
    ] = defaults.PLUGIN_DIR,
    registry_dir: Annotated[
        Path,
        typer.Option(
            "--kubelet-registry-dir", help="The kubelet's plugin-registration directory (DRA driver).", readable=False
        ),
    ] = defaults.DRA_REGISTRY_DIR,
    plugins_dir: Annotated[
        Path,
        typer.Option("--kubelet-plugins-dir", help="The kubelet's plugin directory (DRA driver).", readable=False),
    ] = defaults.DRA_PLUGINS_DIR,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            help="Ask this API server whether it serves resource.k8s.io/v1 [default: the pod's service account "
            "or $KUBECONFIG, else not asked].",
            readable=False,
        ),
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--output", help="Report format.")] = OutputFormat.text,
) -> None:
    """Report whether this node can give unprivileged pods FUSE, and what to do when it cannot.

    Checks kernel support, the device node, spec files, the runtime's CDI setting (over CRI), the
    kubelet socket dir and AppArmor/SELinux, and says which strategy `plugin --strategy auto` would
    choose. Exit 1 when something blocks FUSE pods.
    """
    from cdi_fuse import doctor
    from cdi_fuse.cdi import names

    qualified = names.qualified_name(vendor, cls, device_name)
    try:
        names.parse_qualified_name(qualified)
    except errors.SpecError as exc:
        raise _fail(str(exc), code=EXIT_USAGE) from None
    report = doctor.run_doctor(
        doctor.DoctorOptions(
            device_path=device_path,
            qualified_name=qualified,
            spec_dirs=tuple(spec_dirs) if spec_dirs else defaults.SPEC_DIRS,
            runtime_endpoints=tuple(runtime_endpoints or defaults.RUNTIME_ENDPOINTS),
            device_plugin_dir=device_plugin_dir,
            dra_registry_dir=registry_dir,
            dra_plugins_dir=plugins_dir,
            kubeconfig=kubeconfig,
        )
    )
    if output is OutputFormat.json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            typer.echo(f"{check.status.upper():<4}  {check.name:<{width}}  {check.detail}")
            if check.hint and check.status != "ok":
                typer.echo(f"{'':<4}  {'':<{width}}  -> {check.hint}")
        typer.echo(f"strategy auto would use: {report.strategy} ({report.strategy_reason})")
        typer.echo("verdict: " + ("FUSE pods are blocked on this node" if report.blocking else "ready for FUSE pods"))
    raise typer.Exit(EXIT_FAIL if report.blocking else EXIT_OK)


class RuntimeKind(StrEnum):
    containerd = "containerd"
    crio = "crio"


@app.command("runtime-config")
def runtime_config_command(
    runtime: Annotated[RuntimeKind, typer.Argument(help="The container runtime to configure.")],
    apply: Annotated[
        bool, typer.Option("--apply", help="Edit the config file in place (keeps comments, writes a backup).")
    ] = False,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            readable=False,
            help="Config file to edit with --apply [default: /etc/containerd/config.toml, or the CRI-O "
            "drop-in /etc/crio/crio.conf.d/10-cdi.conf].",
        ),
    ] = None,
    config_version: Annotated[
        int | None,
        typer.Option(
            "--config-version",
            help="containerd config version: 2 (containerd 1.7) or 3 (containerd 2.x) [default: from the "
            "file with --apply, else from the running containerd over CRI, else 2].",
        ),
    ] = None,
    spec_dirs: Annotated[
        list[str] | None,
        typer.Option("--spec-dir", help="CDI spec dirs the runtime should read [default: /etc/cdi, /var/run/cdi]."),
    ] = None,
    runtime_endpoint: Annotated[
        str | None,
        typer.Option(
            "--runtime-endpoint",
            help="CRI endpoint of the runtime, asked for containerd's version or the spec dirs CRI-O reads "
            "[default: unix:///run/containerd/containerd.sock, or unix:///var/run/crio/crio.sock].",
        ),
    ] = None,
) -> None:
    """Print (or --apply) the runtime configuration that turns CDI on and points it at the spec dirs.

    After --apply, restart the runtime (the command says how).
    """
    from cdi_fuse.runtime import config as runtime_config
    from cdi_fuse.runtime import crio

    dirs = tuple(spec_dirs) if spec_dirs else tuple(str(d) for d in defaults.SPEC_DIRS)
    if config_version not in (None, 2, 3):
        raise _fail(f"invalid --config-version {config_version!r}: use 2 or 3", code=EXIT_USAGE)
    try:
        if runtime is RuntimeKind.crio:
            if apply:
                result = runtime_config.apply_crio_config(config_path or defaults.CRIO_DROP_IN, spec_dirs=dirs)
                typer.echo(result.message)
            else:
                typer.echo(
                    crio.crio_snippet(spec_dirs=dirs, runtime_endpoint=runtime_endpoint or defaults.CRIO_ENDPOINT),
                    nl=False,
                )
            return
        if apply:
            result = runtime_config.apply_containerd_config(
                config_path or defaults.CONTAINERD_CONFIG,
                spec_dirs=dirs,
                version=config_version,
                runtime_endpoint=runtime_endpoint or defaults.CONTAINERD_ENDPOINT,
            )
            typer.echo(result.message)
            return
        snippet = runtime_config.containerd_snippet(
            version=config_version, spec_dirs=dirs, runtime_endpoint=runtime_endpoint or defaults.CONTAINERD_ENDPOINT
        )
        typer.echo(snippet, nl=False)
    except errors.RuntimeConfigValueError as exc:
        raise _fail(str(exc), code=EXIT_USAGE) from None
    except errors.RuntimeConfigError as exc:
        raise _fail(str(exc)) from None
