"""plugin/dra.proto and plugin/pluginregistration.proto against the upstream kubelet protos.

Both must be the whole upstream API (every message, field, enum value and RPC, same names, numbers,
types and streaming), and the generated stubs in cdi_fuse/_proto must be what they produce today. The
upstream files come from tests/reference.py (skip with the reason when absent, fail in CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from cdi_fuse._proto import dra_pb2, pluginregistration_pb2
from tests import reference
from tests.conformance.test_proto_conformance import (
    PLUGIN_DIR,
    api_table,
    compile_descriptor,
    differences,
)
from tests.conformance.test_proto_conformance import _mutated as mutated
from tests.conformance.test_proto_conformance import _upstream_class as upstream_class
from tests.conformance.test_proto_conformance import _walk_messages as walk_messages

UPSTREAM_DRA = "kubelet/dra_v1_api.proto"
UPSTREAM_REGISTRATION = "kubelet/pluginregistration_v1_api.proto"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("protoc-dra")


@pytest.fixture(scope="module")
def upstream_dra(work: Path) -> descriptor_pb2.FileDescriptorProto:
    return compile_descriptor(reference.reference_file(UPSTREAM_DRA), work / "upstream")


@pytest.fixture(scope="module")
def upstream_registration(work: Path) -> descriptor_pb2.FileDescriptorProto:
    return compile_descriptor(reference.reference_file(UPSTREAM_REGISTRATION), work / "upstream")


@pytest.fixture(scope="module")
def our_dra(work: Path) -> descriptor_pb2.FileDescriptorProto:
    return compile_descriptor(PLUGIN_DIR / "dra.proto", work / "ours")


@pytest.fixture(scope="module")
def our_registration(work: Path) -> descriptor_pb2.FileDescriptorProto:
    return compile_descriptor(PLUGIN_DIR / "pluginregistration.proto", work / "ours")


# ---- the whole upstream API ---------------------------------------------------------------------------


def test_dra_matches_upstream_exactly(our_dra, upstream_dra) -> None:
    assert differences(our_dra, upstream_dra, subset=False) == []


def test_registration_matches_upstream_exactly(our_registration, upstream_registration) -> None:
    assert differences(our_registration, upstream_registration, subset=False) == []


def test_dra_service_is_what_the_kubelet_dials(our_dra) -> None:
    """The kubelet calls /k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources."""
    services = api_table(our_dra)["services"]
    assert set(services) == {".k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"}
    assert set(services[".k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"]) == {
        "NodePrepareResources",
        "NodeUnprepareResources",
    }
    assert dra_pb2.DESCRIPTOR.services_by_name["DRAPlugin"].full_name == "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"


def test_registration_service_is_what_the_plugin_watcher_dials(our_registration) -> None:
    services = api_table(our_registration)["services"]
    assert set(services) == {".pluginregistration.Registration"}
    assert set(services[".pluginregistration.Registration"]) == {"GetInfo", "NotifyRegistrationStatus"}


@pytest.mark.parametrize(
    ("proto", "old", "new", "expected"),
    [
        pytest.param(
            "dra.proto",
            "repeated string cdi_device_ids = 4;",
            "repeated string cdi_device_ids = 5;",
            "Device.cdi_device_ids",
            id="renumbered-field",
        ),
        pytest.param(
            "dra.proto",
            "map<string, NodePrepareResourceResponse> claims = 1;",
            "repeated NodePrepareResourceResponse claims = 1;",
            "NodePrepareResourcesResponse.claims",
            id="map-made-list",
        ),
        pytest.param(
            "dra.proto", "  string error = 2;\n", "", "NodePrepareResourceResponse.error is missing", id="dropped-field"
        ),
        pytest.param(
            "dra.proto",
            "rpc NodeUnprepareResources(NodeUnprepareResourcesRequest) returns (NodeUnprepareResourcesResponse) {}",
            "",
            "DRAPlugin.NodeUnprepareResources is missing",
            id="dropped-rpc",
        ),
        pytest.param(
            "dra.proto",
            "package k8s.io.kubelet.pkg.apis.dra.v1;",
            "package v1;",
            "package 'v1'",
            id="short-package",
        ),
        pytest.param(
            "pluginregistration.proto",
            "repeated string supported_versions = 4;",
            "string supported_versions = 4;",
            "PluginInfo.supported_versions",
            id="list-made-scalar",
        ),
        pytest.param(
            "pluginregistration.proto",
            "rpc GetInfo(InfoRequest) returns (PluginInfo) {}",
            "rpc GetInfo(InfoRequest) returns (stream PluginInfo) {}",
            "Registration.GetInfo",
            id="invented-streaming",
        ),
    ],
)
def test_alterations_are_detected(tmp_path, upstream_dra, upstream_registration, proto, old, new, expected) -> None:
    upstream = upstream_dra if proto == "dra.proto" else upstream_registration
    altered = mutated(tmp_path, PLUGIN_DIR / proto, old, new)
    found = differences(altered, upstream, subset=False)
    assert any(expected in line for line in found), found


# ---- the generated stubs and the wire -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "proto"),
    [
        pytest.param(dra_pb2, "dra.proto", id="dra"),
        pytest.param(pluginregistration_pb2, "pluginregistration.proto", id="pluginregistration"),
    ],
)
def test_generated_stubs_are_up_to_date(work, module: Any, proto: str) -> None:
    compiled = compile_descriptor(PLUGIN_DIR / proto, work / "fresh")
    for _, message in walk_messages("", compiled.message_type):
        for field in message.field:
            field.ClearField("json_name")  # protoc records it; the Python generator leaves it out
    shipped = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    assert shipped == compiled, "cdi_fuse/_proto is stale: run `make proto`"


def test_prepare_response_decodes_with_upstream_descriptor(upstream_dra) -> None:
    ours = dra_pb2.NodePrepareResourcesResponse(
        claims={
            "uid-1": dra_pb2.NodePrepareResourceResponse(
                devices=[
                    dra_pb2.Device(
                        request_names=["fuse"],
                        pool_name="node-a",
                        device_name="fuse-0",
                        cdi_device_ids=["cdi-fuse.io/fuse=fuse"],
                    )
                ]
            ),
            "uid-2": dra_pb2.NodePrepareResourceResponse(error="claim not allocated"),
        }
    )
    decoded = upstream_class(upstream_dra, "k8s.io.kubelet.pkg.apis.dra.v1.NodePrepareResourcesResponse").FromString(
        ours.SerializeToString()
    )
    (device,) = decoded.claims["uid-1"].devices
    assert (device.pool_name, device.device_name, list(device.cdi_device_ids)) == (
        "node-a",
        "fuse-0",
        ["cdi-fuse.io/fuse=fuse"],
    )
    assert decoded.claims["uid-2"].error == "claim not allocated"


def test_plugin_info_decodes_with_upstream_descriptor(upstream_registration) -> None:
    ours = pluginregistration_pb2.PluginInfo(
        type="DRAPlugin",
        name="fuse.cdi-fuse.io",
        endpoint="/var/lib/kubelet/plugins/fuse.cdi-fuse.io/dra.sock",
        supported_versions=["v1.DRAPlugin"],
    )
    decoded = upstream_class(upstream_registration, "pluginregistration.PluginInfo").FromString(
        ours.SerializeToString()
    )
    assert decoded.type == "DRAPlugin"
    assert list(decoded.supported_versions) == ["v1.DRAPlugin"]
