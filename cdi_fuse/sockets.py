"""Sockets a kubelet plugin serves, and the host:port of its HTTP endpoint: which file is at a path, whether
someone answers it, refusing a live socket and removing a stale one, and starting a gRPC server at a path
without ever deleting another's socket.

gRPC unlinks the path it bound when its server stops, whoever's file is there by then. So a server binds a
hidden, once-used name beside the path (dot files are skipped by the kubelet's plugin watcher) and the socket
is renamed into place: it appears whole, and stopping the server can only unlink that name. Used by the
device plugin's endpoints and by the DRA driver.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

import grpc

from cdi_fuse import errors

__all__ = [
    "MAX_SOCKET_PATH",
    "FileIdentity",
    "check_socket_free",
    "dials",
    "file_identity",
    "parse_address",
    "serve_at",
]

log = logging.getLogger(__name__)

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
_SERVE_ATTEMPTS = 3
_serial = itertools.count(1)

# (device, inode, ctime): which file is at a path. Inode numbers are reused at once on tmpfs and ext4, so a
# socket deleted and created again often gets the same number; its ctime (set when the socket is bound)
# differs. Nobody renames or chmods these sockets, which would change the ctime too.
FileIdentity = tuple[int, int, int]


def file_identity(path: Path) -> FileIdentity | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_ctime_ns)


def dials(path: Path, timeout: float = 0.5) -> bool:
    """True when a unix socket at `path` accepts a connection (someone serves it)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(timeout)
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def check_socket_free(path: Path, *, program: str = "cdi-fuse") -> None:
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
        f"another process is serving {str(path)!r}; stop it first (is a second {program} running?)", socket=path
    )


def serve_at(path: Path, make_server: Callable[[], grpc.Server]) -> grpc.Server:
    """Start a server from `make_server()` (services added, no port) and put its socket at `path`.

    Retries when the bound socket is deleted before the rename (a kubelet clearing its dir); raises
    RegistrationError when that keeps happening or the path is unusable. Check the path is free first.
    """
    for _ in range(_SERVE_ATTEMPTS):
        bound = path.with_name(f".{path.name}.{os.getpid()}.{next(_serial)}")
        if len(str(bound).encode()) > MAX_SOCKET_PATH:
            raise errors.RegistrationError(
                f"socket path {str(bound)!r} is longer than {MAX_SOCKET_PATH} bytes", socket=path
            )
        server = make_server()
        if server.add_insecure_port(f"unix:{bound}") == 0:
            raise errors.RegistrationError(f"cannot listen on {str(bound)!r}", socket=path)
        server.start()
        try:
            os.rename(bound, path)
        except OSError as exc:
            server.stop(None)
            if exc.errno == errno.ENOENT:
                continue
            raise errors.RegistrationError(
                f"cannot move the socket into place at {str(path)!r}: {exc.strerror}", socket=path
            ) from exc
        return server
    raise errors.RegistrationError(
        f"cannot serve {str(path)!r}: the socket was deleted before it could be moved into place "
        f"{_SERVE_ATTEMPTS} times in a row",
        socket=path,
    )


def parse_address(address: str, *, what: str = "metrics address", option: str = "--metrics-address") -> tuple[str, int]:
    """`host:port`, IPv6 as `[::1]:9400`, into a bind pair (an empty host means every IPv4 address, port 0
    one the kernel picks)."""
    host, sep, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    valid = bool(sep) and port.isdigit() and int(port) < 65536 and (bracketed or ":" not in host)
    if valid and bracketed:
        try:
            valid = ipaddress.ip_address(host).version == 6
        except ValueError:
            valid = False
    if not valid:
        raise errors.InvalidOptionError(
            f"invalid {what} {address!r}: expected host:port, e.g. 127.0.0.1:9400 or [::1]:9400", option=option
        )
    return host or "0.0.0.0", int(port)
