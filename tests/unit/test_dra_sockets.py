"""ServedSocket: the socket appears whole, is ours by inode, and stopping never removes someone else's file."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cdi_fuse import errors
from cdi_fuse.dra import sockets


@pytest.fixture
def directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sock-") as root:  # short: unix socket paths are limited
        yield Path(root)


def served(path: Path) -> sockets.ServedSocket:
    endpoint = sockets.ServedSocket(path, lambda server: None)
    endpoint.serve()
    return endpoint


def test_serves_at_the_path_and_leaves_no_temporary_name(directory: Path) -> None:
    endpoint = served(directory / "a.sock")
    try:
        assert endpoint.is_ours()
        assert [p.name for p in directory.iterdir()] == ["a.sock"]
        with grpc.insecure_channel(f"unix:{endpoint.path}") as channel:
            grpc.channel_ready_future(channel).result(timeout=5)
    finally:
        endpoint.stop()
    assert list(directory.iterdir()) == []


def test_stop_leaves_a_replacement_alone(directory: Path) -> None:
    """gRPC unlinks the path it bound when it stops; ours bound a temporary name, so this file survives."""
    endpoint = served(directory / "a.sock")
    os.unlink(endpoint.path)
    replacement = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    replacement.bind(str(endpoint.path))
    replacement.listen()
    try:
        assert not endpoint.is_ours()
        endpoint.stop()
        assert endpoint.path.exists()
    finally:
        replacement.close()


def test_a_live_socket_is_refused_and_a_stale_one_replaced(directory: Path) -> None:
    first = served(directory / "a.sock")
    try:
        with pytest.raises(errors.RegistrationError, match="another process is serving"):
            sockets.ServedSocket(first.path, lambda server: None).serve()
        assert first.is_ours()
    finally:
        first.stop()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(directory / "a.sock"))
    stale.close()  # a socket file nobody listens on: what a killed process leaves
    second = served(directory / "a.sock")
    assert second.is_ours()
    second.stop()
