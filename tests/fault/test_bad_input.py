"""Hostile input: `cdi-fuse validate` on broken files, fuzzed spec data, fuzzed Allocate requests.

Broken files get a report and exit 1 (invalid) or 2 (unreadable), never a traceback or a hang.
check_spec_data never raises. Allocate answers OK with one response per container, or
INVALID_ARGUMENT naming the bad ID; never any other status.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc
from cdi_fuse.cdi import validation
from cdi_fuse.deviceplugin import api, server, state, strategies
from tests.fault import conftest as fault

VALID_HEAD = 'cdiVersion: "0.3.0"\nkind: a.com/b\n'


def _nested(depth: int, leaf: str = '"x"') -> str:
    return "[" * depth + leaf + "]" * depth


def _alias_bomb() -> str:
    """Nine levels of nine aliases: under 1 KiB of YAML, 9**9 strings once expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n" + VALID_HEAD + "devices:\n- name: x\n  containerEdits:\n    env: *l9\n"


BAD_FILES: list[Any] = [
    pytest.param("empty.yaml", b"", 1, id="empty"),
    pytest.param("null.json", b"null", 1, id="json-null"),
    pytest.param("list.yaml", b"- a\n- b\n", 1, id="top-level-list"),
    pytest.param("scalar.json", b"42", 1, id="top-level-number"),
    pytest.param("unclosed.json", b'{"cdiVersion": "0.3.0", "kind": ', 1, id="malformed-json"),
    pytest.param("tabs.yaml", b"cdiVersion: 0.3.0\n\tkind: a.com/b\n", 1, id="malformed-yaml"),
    pytest.param("dupkey.yaml", (VALID_HEAD + "kind: c.com/d\ndevices: []\n").encode(), 1, id="duplicate-key"),
    pytest.param(
        "types.json",
        json.dumps({"cdiVersion": 0.3, "kind": ["a.com/b"], "devices": {"name": 1}}).encode(),
        1,
        id="wrong-types",
    ),
    pytest.param(
        "types2.yaml",
        (
            VALID_HEAD + "devices:\n- name: x\n  containerEdits:\n    deviceNodes:\n    - path: 7\n      major: x\n"
        ).encode(),
        1,
        id="wrong-nested-types",
    ),
    pytest.param("huge.yaml", b"# padding\n" * 110_000, 1, id="over-1-MiB"),
    pytest.param("deep.json", _nested(100_000).encode(), 1, id="100000-nested-lists-json"),
    pytest.param("deep.yaml", _nested(100_000).encode(), 1, id="100000-nested-lists-yaml"),
    pytest.param(
        "deep-field.json",
        (
            '{"cdiVersion": "0.3.0", "kind": "a.com/b", "devices": [{"name": "x", "containerEdits": {"env": '
            + _nested(900)
            + "}}]}"
        ).encode(),
        1,
        id="900-nested-lists-in-a-field",
    ),
    pytest.param("latin1.yaml", "cdiVersion: 0.3.0\nkind: caf\xe9.com/b\n".encode("latin-1"), 1, id="non-utf8"),
    pytest.param("junk.yaml", bytes(range(256)) * 64, 1, id="binary-junk"),
    pytest.param("nul.yaml", b"cdiVersion: \x00\x01\x02\n", 1, id="control-characters"),
    pytest.param("bomb.yaml", _alias_bomb().encode(), 1, id="yaml-alias-bomb"),
    pytest.param(
        "cycle.yaml",
        (VALID_HEAD + "devices: &d\n- name: x\n  containerEdits:\n    env: *d\n").encode(),
        1,
        id="recursive-alias",
    ),
    pytest.param("tags.yaml", b"!!python/object/apply:os.system ['true']\n", 1, id="python-tag"),
]


@pytest.mark.parametrize(("name", "content", "code"), BAD_FILES)
def test_validate_reports_bad_files_without_a_traceback(tmp_path: Path, name: str, content: bytes, code: int) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    result = fault.cdi_fuse("validate", str(path), timeout=30)

    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}: invalid" in result.stdout
    assert len(result.stdout) < 64 * 1024, "the report stays readable"


def test_validate_reports_unreadable_paths_and_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    missing = tmp_path / "missing.json"

    result = fault.cdi_fuse("validate", "--output", "json", str(fifo), str(directory), str(missing), timeout=30)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    reports = {r["path"]: r for r in json.loads(result.stdout)}
    assert {p: r["readable"] for p, r in reports.items()} == {
        str(fifo): False,
        str(directory): False,
        str(missing): False,
    }
    assert reports[str(fifo)]["problems"][0]["message"] == "not a regular file"


# --- check_spec_data on arbitrary JSON-shaped data ---

SPEC_KEYS = [
    "cdiVersion",
    "kind",
    "devices",
    "name",
    "containerEdits",
    "annotations",
    "env",
    "deviceNodes",
    "mounts",
    "hooks",
    "path",
    "hostPath",
    "containerPath",
    "type",
    "major",
    "minor",
    "permissions",
    "fileMode",
    "uid",
    "gid",
    "options",
    "hookName",
    "args",
    "timeout",
    "intelRdt",
    "closID",
    "additionalGids",
    "netDevices",
    "hostInterfaceName",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["0.3.0", "0.7.0", "1.1.0", "a.com/b", "c", "/dev/x", "rwm", "prestart"])
)
json_data = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(SPEC_KEYS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)
spec_like = st.fixed_dictionaries(
    {
        "cdiVersion": st.sampled_from(["0.3.0", "0.5.0", "0.6.0", "0.7.0", "1.0.0", "1.1.0", "9.9.9", ""]),
        "kind": st.sampled_from(["a.com/b", "a/b", "", "x/y/z", "1a.com/b"]) | st.text(max_size=12),
        "devices": st.lists(
            st.fixed_dictionaries({"name": st.text(max_size=8), "containerEdits": json_data}), max_size=3
        ),
    },
    optional={"containerEdits": json_data, "annotations": json_data},
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_data | spec_like)
def test_check_spec_data_never_raises(data: object) -> None:
    spec, problems = validation.check_spec_data(data)
    assert spec is not None or problems, "no spec means at least one problem"
    assert all(isinstance(p, validation.Problem) for p in problems)


# --- Allocate on a real gRPC server ---

KNOWN_IDS = [api.DeviceId(f"fuse-{i}") for i in range(5)]
QUALIFIED = "cdi-fuse.io/fuse=fuse"


@pytest.fixture(scope="module")
def allocate() -> Iterator[Callable[..., pb.AllocateResponse]]:
    """DevicePluginService behind a real grpc server on a unix socket; yields its Allocate stub."""
    resource = "cdi-fuse.io/fuse"
    builder = strategies.AllocationBuilder(
        resource_name=resource,
        qualified_name=QUALIFIED,
        host_device_path="/dev/fuse",
        container_device_path="/dev/fuse",
        permissions="rw",
        device_ids=KNOWN_IDS,
    )
    plugin_state = state.PluginState(
        healthy=True, decision=api.Decision(frozenset({api.CDI, api.CDI_ANNOTATIONS}), "fixed by the test")
    )
    service = server.DevicePluginService(
        resource_name=resource,
        device_lists=server.DeviceLists("fuse", len(KNOWN_IDS)),
        plugin_state=plugin_state,
        builder=builder,
    )
    directory = Path(tempfile.mkdtemp(prefix="alloc-", dir="/tmp"))
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_DevicePluginServicer_to_server(service, grpc_server)
    grpc_server.add_insecure_port(f"unix:{directory / 'p.sock'}")
    grpc_server.start()
    channel = grpc.insecure_channel(f"unix:{directory / 'p.sock'}")
    try:
        yield pb_grpc.DevicePluginStub(channel).Allocate
    finally:
        channel.close()
        service.close()
        grpc_server.stop(grace=0).wait()
        (directory / "p.sock").unlink(missing_ok=True)
        directory.rmdir()


# Protobuf strings are UTF-8: lone surrogates cannot even be sent, so they are left out.
device_ids = st.sampled_from(KNOWN_IDS) | st.text(st.characters(codec="utf-8"), max_size=40)
containers = st.lists(st.lists(device_ids, max_size=4), max_size=200)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=containers)
@example(requests=[])
@example(requests=[[]] * 200)
@example(requests=[["fuse-0"], [""]])
@example(requests=[["fuse-1", "\u00e9" * 5000]])  # longer than a status header may be
@example(requests=[["fuse-2"]] * 199 + [["fuse-\x00"]])
def test_allocate_answers_ok_or_invalid_argument_naming_the_id(
    allocate: Callable[..., pb.AllocateResponse], requests: list[list[str]]
) -> None:
    request = pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=ids) for ids in requests])
    unknown = [i for ids in requests for i in ids if i not in KNOWN_IDS]
    try:
        response = allocate(request, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{exc.code()}: {exc.details()}"
        assert unknown, f"rejected a request of known IDs: {exc.details()}"
        assert repr(unknown[0][:128]) in (exc.details() or "")
        return
    assert not unknown, f"accepted unknown IDs {unknown[:3]}"
    assert len(response.container_responses) == len(requests)
    for ids, container in zip(requests, response.container_responses, strict=True):
        assert [d.name for d in container.cdi_devices] == [QUALIFIED]
        assert list(container.annotations.values()) == ([QUALIFIED] if ids else [])
