"""A gRPC service on a unix socket that knows, by inode, whether the socket file is still its own."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc

from cdi_fuse import errors

__all__ = ["ServedSocket", "check_socket_free", "inode_of"]

log = logging.getLogger(__name__)

AddServices = Callable[[grpc.Server], None]


def inode_of(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def check_socket_free(path: Path) -> None:
    """Refuse a socket another live process serves; remove a stale one a killed process left behind."""
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT, errno.EPROTOTYPE):
            raise errors.RegistrationError(f"cannot check socket {str(path)!r}: {exc}", socket=path) from exc
        log.info("removing stale socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    finally:
        probe.close()
    raise errors.RegistrationError(
        f"another process is serving {str(path)!r}; stop it first (is a second cdi-fuse dra running?)", socket=path
    )


class ServedSocket:
    """Serve gRPC services on `path`; `is_ours()` compares the file's inode with the one we created.

    gRPC unlinks the path it bound when its server stops, whoever's file is there by then. So the server
    binds a hidden temporary name (the kubelet's plugin watcher skips dot files) that is then renamed to
    `path`: the socket appears whole, and stopping the server can only unlink the temporary name. `stop()`
    removes `path` itself only while it is ours, so a restart never deletes a successor's socket.
    """

    def __init__(self, path: Path, add_services: AddServices, *, workers: int = 4) -> None:
        self.path = path
        self._add_services = add_services
        self._workers = workers
        self._server: grpc.Server | None = None
        self._inode: int | None = None

    def serve(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_socket_free(self.path)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=f"grpc-{self.path.stem}"),
            options=[("grpc.so_reuseport", 0)],
        )
        self._add_services(server)
        bound = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            bound.unlink()
        if server.add_insecure_port(f"unix:{bound}") == 0:
            raise errors.RegistrationError(f"cannot listen on {str(bound)!r}", socket=self.path)
        server.start()
        try:
            inode = os.stat(bound).st_ino
            os.rename(bound, self.path)
        except OSError as exc:
            server.stop(None)
            raise errors.RegistrationError(f"cannot serve {str(self.path)!r}: {exc}", socket=self.path) from exc
        self._server = server
        # None when deleted again at once: the deletion event makes the loop serve it again.
        self._inode = inode if inode_of(self.path) == inode else None

    @property
    def serving(self) -> bool:
        return self._server is not None

    def is_ours(self) -> bool:
        return self._inode is not None and inode_of(self.path) == self._inode

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.2).wait(2.0)
        if self.is_ours():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._server = None
        self._inode = None
