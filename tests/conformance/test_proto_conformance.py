"""Our plugin/*.proto against the upstream kubelet and CRI protos (the oracle in ../shared/reference/).

deviceplugin.proto must be the whole upstream v1beta1 API; cri.proto may be a subset of runtime.v1 but every
message, field, enum value and RPC it has must match upstream. Both are compiled with grpc_tools.protoc into
FileDescriptorSets and compared as normalised tables, and the generated stubs in cdi_fuse/_proto must be the
ones plugin/*.proto produces today.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from cdi_fuse._proto import cri_pb2, deviceplugin_pb2
from tests import reference

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "plugin"
UPSTREAM_DEVICEPLUGIN = "kubelet/deviceplugin_v1beta1_api.proto"
UPSTREAM_CRI = "cri/runtime_v1_api.proto"

FDP = descriptor_pb2.FieldDescriptorProto
FieldKey = tuple[Any, ...]


# ---- compiling ----------------------------------------------------------------------------------------


def _gogo_stand_in(proto_text: str) -> str:
    """A minimal gogo.proto declaring every `(gogoproto.x)` option the text uses, as a bool or string."""
    lines = ['syntax = "proto2";', "package gogoproto;", 'import "google/protobuf/descriptor.proto";']
    number = 60000
    file_level = re.findall(r"option\s+\(gogoproto\.(\w+)\)\s*=\s*(\"?)", proto_text)
    field_level = re.findall(r"[\[,]\s*\(gogoproto\.(\w+)\)\s*=\s*(\"?)", proto_text)
    for target, found in (("FileOptions", file_level), ("FieldOptions", field_level)):
        lines.append(f"extend google.protobuf.{target} {{")
        for name, quote in dict(found).items():
            lines.append(f"  optional {'string' if quote else 'bool'} {name} = {number};")
            number += 1
        lines.append("}")
    return "\n".join(lines) + "\n"


def compile_descriptor(proto: Path, work: Path) -> descriptor_pb2.FileDescriptorProto:
    """Compile one .proto (its gogo imports replaced by stand-ins) and return its FileDescriptorProto."""
    text = proto.read_text()
    include = work / "include"
    include.mkdir(parents=True, exist_ok=True)
    for imported in re.findall(r'^import\s+"([^"]*gogo[^"]*)";', text, flags=re.MULTILINE):
        stand_in = include / imported
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text(_gogo_stand_in(text))
    out = work / f"{proto.stem}.pb"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={proto.parent}",
            f"--proto_path={include}",
            f"--descriptor_set_out={out}",
            str(proto),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"protoc failed on {proto}:\n{result.stderr}"
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (file_proto,) = descriptor_set.file  # without --include_imports only the named file is in the set
    return file_proto


# ---- normalising ------------------------------------------------------------------------------------


def _field_key(field: FDP, map_entries: dict[str, descriptor_pb2.DescriptorProto]) -> FieldKey:
    entry = map_entries.get(field.type_name)
    if entry is not None:
        key, value = entry.field
        return ("map", field.number, key.type, value.type, value.type_name)
    return (FDP.Label.Name(field.label), field.number, FDP.Type.Name(field.type), field.type_name)


def _walk_messages(
    prefix: str, messages: Iterable[descriptor_pb2.DescriptorProto]
) -> Iterable[tuple[str, descriptor_pb2.DescriptorProto]]:
    for message in messages:
        name = f"{prefix}.{message.name}"
        yield name, message
        yield from _walk_messages(name, message.nested_type)


def _walk_enums(
    prefix: str, file_or_message: descriptor_pb2.FileDescriptorProto | descriptor_pb2.DescriptorProto
) -> Iterable[tuple[str, descriptor_pb2.EnumDescriptorProto]]:
    for enum in file_or_message.enum_type:
        yield f"{prefix}.{enum.name}", enum
    nested = (
        file_or_message.message_type
        if isinstance(file_or_message, descriptor_pb2.FileDescriptorProto)
        else file_or_message.nested_type
    )
    for message in nested:
        yield from _walk_enums(f"{prefix}.{message.name}", message)


def api_table(file_proto: descriptor_pb2.FileDescriptorProto) -> dict[str, dict[str, dict[str, Any]]]:
    """{'messages': {full name: {field: key}}, 'enums': {...: {value: number}}, 'services': {...: {rpc: key}}}."""
    prefix = f".{file_proto.package}"
    all_messages = dict(_walk_messages(prefix, file_proto.message_type))
    map_entries = {name: m for name, m in all_messages.items() if m.options.map_entry}
    messages = {
        name: {field.name: _field_key(field, map_entries) for field in message.field}
        for name, message in all_messages.items()
        if name not in map_entries
    }
    enums = {name: {v.name: v.number for v in enum.value} for name, enum in _walk_enums(prefix, file_proto)}
    services = {
        f"{prefix}.{service.name}": {
            method.name: (
                method.input_type,
                method.output_type,
                method.client_streaming,
                method.server_streaming,
            )
            for method in service.method
        }
        for service in file_proto.service
    }
    return {"messages": messages, "enums": enums, "services": services}


def differences(
    ours: descriptor_pb2.FileDescriptorProto, upstream: descriptor_pb2.FileDescriptorProto, *, subset: bool
) -> list[str]:
    """What in `ours` is not as upstream has it; with subset=False also what upstream has and ours lacks."""
    found: list[str] = []
    if ours.package != upstream.package:
        found.append(f"package {ours.package!r} != upstream {upstream.package!r}")
    our_table, up_table = api_table(ours), api_table(upstream)
    for kind in ("messages", "enums", "services"):
        our_items, up_items = our_table[kind], up_table[kind]
        for name, members in our_items.items():
            if name not in up_items:
                found.append(f"{kind}: {name} is not upstream")
                continue
            for member, key in members.items():
                up_key = up_items[name].get(member)
                if up_key != key:
                    found.append(f"{kind}: {name}.{member} is {key}, upstream {up_key}")
            if not subset:
                found.extend(f"{kind}: {name}.{member} is missing" for member in up_items[name].keys() - members.keys())
        if not subset:
            found.extend(f"{kind}: {name} is missing" for name in up_items.keys() - our_items.keys())
    return sorted(found)


# ---- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("protoc")


@pytest.fixture(scope="module")
def upstream_deviceplugin(work: Path) -> descriptor_pb2.FileDescriptorProto:
    return compile_descriptor(reference.reference_file(UPSTREAM_DEVICEPLUGIN), work / "upstream")


@pytest.fixture(scope="module")
def upstream_cri(work: Path) -> descriptor_pb2.FileDescriptorProto:
    return compile_descriptor(reference.reference_file(UPSTREAM_CRI), work / "upstream")


@pytest.fixture(scope="module")
def our_deviceplugin(work: Path) -> descriptor_pb2.FileDescriptorProto:
    return compile_descriptor(PLUGIN_DIR / "deviceplugin.proto", work / "ours")


@pytest.fixture(scope="module")
def our_cri(work: Path) -> descriptor_pb2.FileDescriptorProto:
    return compile_descriptor(PLUGIN_DIR / "cri.proto", work / "ours")


def _mutated(tmp_path: Path, source: Path, old: str, new: str) -> descriptor_pb2.FileDescriptorProto:
    text = source.read_text()
    assert text.count(old) == 1, f"mutation anchor {old!r} must occur once in {source.name}"
    copy = tmp_path / source.name
    copy.write_text(text.replace(old, new))
    return compile_descriptor(copy, tmp_path)


# ---- deviceplugin: the whole upstream API ------------------------------------------------------------


def test_deviceplugin_matches_upstream_exactly(our_deviceplugin, upstream_deviceplugin) -> None:
    assert differences(our_deviceplugin, upstream_deviceplugin, subset=False) == []


def test_deviceplugin_service_names_are_what_kubelet_dials(our_deviceplugin) -> None:
    services = set(api_table(our_deviceplugin)["services"])
    assert services == {".v1beta1.Registration", ".v1beta1.DevicePlugin"}


def test_deviceplugin_has_cdi_devices_field_5(our_deviceplugin) -> None:
    fields = api_table(our_deviceplugin)["messages"][".v1beta1.ContainerAllocateResponse"]
    assert fields["cdi_devices"] == ("LABEL_REPEATED", 5, "TYPE_MESSAGE", ".v1beta1.CDIDevice")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "cdi_devices = 5;", "cdi_devices = 6;", "ContainerAllocateResponse.cdi_devices", id="renumbered-field"
        ),
        pytest.param("int64 ID = 1;", "int32 ID = 1;", "NUMANode.ID", id="changed-type"),
        pytest.param(
            "map<string, string> envs = 1;",
            "repeated string envs = 1;",
            "ContainerAllocateResponse.envs",
            id="map-made-list",
        ),
        pytest.param(
            'string permissions = 3;  // any of "r", "w", "m"',
            "",
            "DeviceSpec.permissions is missing",
            id="dropped-field",
        ),
        pytest.param(
            "returns (stream ListAndWatchResponse)",
            "returns (ListAndWatchResponse)",
            "DevicePlugin.ListAndWatch",
            id="lost-streaming",
        ),
        pytest.param(
            "rpc PreStartContainer(PreStartContainerRequest) returns (PreStartContainerResponse) {}",
            "",
            "DevicePlugin.PreStartContainer is missing",
            id="dropped-rpc",
        ),
    ],
)
def test_deviceplugin_alterations_are_detected(tmp_path, upstream_deviceplugin, old, new, expected) -> None:
    altered = _mutated(tmp_path, PLUGIN_DIR / "deviceplugin.proto", old, new)
    found = differences(altered, upstream_deviceplugin, subset=False)
    assert any(expected in line for line in found), found


def test_gogo_options_in_the_reference_are_handled(tmp_path, upstream_deviceplugin) -> None:
    """Older upstream revisions import gogo.proto and set gogo options; the stand-in lets them compile."""
    upstream_text = reference.reference_file(UPSTREAM_DEVICEPLUGIN).read_text()
    text = upstream_text.replace(
        "package v1beta1;",
        'package v1beta1;\nimport "github.com/gogo/protobuf/gogoproto/gogo.proto";\n'
        "option (gogoproto.marshaler_all) = true;\noption (gogoproto.goproto_stringer_all) = false;",
        1,
    )
    text = text.replace("string ID = 1;", 'string ID = 1 [(gogoproto.customname) = "ID"];', 1)
    gogo_copy = tmp_path / "src" / "api.proto"
    gogo_copy.parent.mkdir()
    gogo_copy.write_text(text)
    compiled = compile_descriptor(gogo_copy, tmp_path / "work")
    assert list(compiled.dependency) == ["github.com/gogo/protobuf/gogoproto/gogo.proto"]
    assert differences(compiled, upstream_deviceplugin, subset=False) == []


# ---- CRI: a faithful subset ---------------------------------------------------------------------------


def test_cri_is_a_faithful_subset_of_upstream(our_cri, upstream_cri) -> None:
    assert differences(our_cri, upstream_cri, subset=True) == []


def test_cri_has_what_the_runtime_probe_and_e2e_need(our_cri) -> None:
    table = api_table(our_cri)
    rpcs = set(table["services"][".runtime.v1.RuntimeService"])
    assert rpcs >= {
        "Version",
        "Status",
        "RunPodSandbox",
        "StopPodSandbox",
        "RemovePodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "ExecSync",
        "ContainerStatus",
    }
    messages = table["messages"]
    assert messages[".runtime.v1.ContainerConfig"]["CDI_devices"][1] == 17
    assert messages[".runtime.v1.StatusResponse"]["info"][0] == "map"
    assert {"add_capabilities", "drop_capabilities"} <= set(messages[".runtime.v1.Capability"])
    assert {"network", "pid", "ipc"} <= set(messages[".runtime.v1.NamespaceOption"])
    assert table["enums"][".runtime.v1.NamespaceMode"]["NODE"] == 2


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("CDI_devices = 17;", "CDI_devices = 18;", "ContainerConfig.CDI_devices", id="renumbered-field"),
        pytest.param("bool readonly = 3;", "bool read_only = 3;", "Mount.read_only", id="renamed-field"),
        pytest.param("NODE = 2;", "NODE = 2;\n  HOST = 4;", "NamespaceMode.HOST", id="invented-enum-value"),
        pytest.param(
            "message CDIDevice {",
            "message CdiDevice {}\nmessage CDIDevice {",
            "CdiDevice is not upstream",
            id="invented-message",
        ),
        pytest.param(
            "rpc ExecSync(ExecSyncRequest) returns (ExecSyncResponse) {}",
            "rpc ExecSync(ExecSyncRequest) returns (stream ExecSyncResponse) {}",
            "RuntimeService.ExecSync",
            id="invented-streaming",
        ),
    ],
)
def test_cri_alterations_are_detected(tmp_path, upstream_cri, old, new, expected) -> None:
    altered = _mutated(tmp_path, PLUGIN_DIR / "cri.proto", old, new)
    found = differences(altered, upstream_cri, subset=True)
    assert any(expected in line for line in found), found


# ---- the generated stubs and the wire -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "proto"),
    [
        pytest.param(deviceplugin_pb2, "deviceplugin.proto", id="deviceplugin"),
        pytest.param(cri_pb2, "cri.proto", id="cri"),
    ],
)
def test_generated_stubs_are_up_to_date(work, module, proto) -> None:
    compiled = compile_descriptor(PLUGIN_DIR / proto, work / "fresh")
    for message in _walk_messages("", compiled.message_type):
        for field in message[1].field:
            field.ClearField("json_name")  # protoc records it; the Python generator leaves it out
    shipped = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    assert shipped == compiled, "cdi_fuse/_proto is stale: run `make proto`"


def _upstream_class(file_proto: descriptor_pb2.FileDescriptorProto, name: str) -> Any:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def test_allocate_response_decodes_with_upstream_descriptor(upstream_deviceplugin) -> None:
    ours = deviceplugin_pb2.ContainerAllocateResponse(
        envs={"FUSE": "1"},
        devices=[deviceplugin_pb2.DeviceSpec(container_path="/dev/fuse", host_path="/dev/fuse", permissions="rw")],
        annotations={"cdi.k8s.io/fuse": "github.com/fuse=fuse"},
        cdi_devices=[deviceplugin_pb2.CDIDevice(name="github.com/fuse=fuse")],
    )
    upstream_cls = _upstream_class(upstream_deviceplugin, "v1beta1.ContainerAllocateResponse")
    decoded = upstream_cls.FromString(ours.SerializeToString())
    assert [d.name for d in decoded.cdi_devices] == ["github.com/fuse=fuse"]
    assert decoded.devices[0].host_path == "/dev/fuse"
    assert dict(decoded.envs) == {"FUSE": "1"}


def test_container_config_decodes_with_upstream_descriptor(upstream_cri) -> None:
    ours = cri_pb2.ContainerConfig(
        metadata=cri_pb2.ContainerMetadata(name="fuse"),
        mounts=[cri_pb2.Mount(container_path="/usr", host_path="/usr", readonly=True)],
        CDI_devices=[cri_pb2.CDIDevice(name="github.com/fuse=fuse")],
        linux=cri_pb2.LinuxContainerConfig(
            security_context=cri_pb2.LinuxContainerSecurityContext(
                capabilities=cri_pb2.Capability(add_capabilities=["SYS_ADMIN"], drop_capabilities=["ALL"]),
                namespace_options=cri_pb2.NamespaceOption(network=cri_pb2.NODE),
            )
        ),
    )
    upstream_cls = _upstream_class(upstream_cri, "runtime.v1.ContainerConfig")
    decoded = upstream_cls.FromString(ours.SerializeToString())
    assert [d.name for d in decoded.CDI_devices] == ["github.com/fuse=fuse"]
    assert decoded.mounts[0].readonly is True
    security = decoded.linux.security_context
    assert list(security.capabilities.drop_capabilities) == ["ALL"]
    assert security.namespace_options.network == 2
