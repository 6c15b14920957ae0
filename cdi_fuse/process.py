"""What a long-running node agent process does around its loop: stop cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["stop_on_signals"]


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None], *, wakeup_fd: int | None = None) -> Iterator[None]:
    """SIGTERM and SIGINT call `stop` while the block runs; the handlers before it are restored after.

    Python runs a signal handler in the main thread, but the kernel may deliver the signal to any thread (gRPC
    runs several): a main thread blocked in poll() would then only notice at its next timeout. With
    `wakeup_fd` (the write end of a non-blocking pipe the main thread polls) the signal's arrival wakes it.
    """
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:
        stop()

    for sig in previous:
        signal.signal(sig, handler)
    previous_fd = signal.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False) if wakeup_fd is not None else None
    try:
        yield
    finally:
        if previous_fd is not None:
            signal.set_wakeup_fd(previous_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)
