"""Event-driven directory watching (inotify) with a wake-up pipe, so a loop never needs to poll."""

from __future__ import annotations

import contextlib
import os
import select
import threading
from dataclasses import dataclass
from pathlib import Path

import inotify_simple

__all__ = ["DirEvent", "DirWatcher"]

_FLAGS = inotify_simple.flags
# Entry created, removed, renamed, rewritten or changed (mode/owner), and the directory itself going away.
_MASK = (
    _FLAGS.CREATE
    | _FLAGS.DELETE
    | _FLAGS.MOVED_FROM
    | _FLAGS.MOVED_TO
    | _FLAGS.CLOSE_WRITE
    | _FLAGS.ATTRIB
    | _FLAGS.DELETE_SELF
    | _FLAGS.MOVE_SELF
)


@dataclass(frozen=True)
class DirEvent:
    directory: Path
    name: str  # "" for events on the directory itself
    mask: int

    @property
    def removed(self) -> bool:
        return bool(self.mask & (_FLAGS.DELETE | _FLAGS.MOVED_FROM))

    @property
    def created(self) -> bool:
        return bool(self.mask & (_FLAGS.CREATE | _FLAGS.MOVED_TO))

    @property
    def directory_gone(self) -> bool:
        return bool(self.mask & (_FLAGS.DELETE_SELF | _FLAGS.MOVE_SELF | _FLAGS.IGNORED))

    @property
    def overflow(self) -> bool:
        """The kernel's queue overflowed: events were lost, so everything must be looked at again."""
        return bool(self.mask & _FLAGS.Q_OVERFLOW)


class DirWatcher:
    """Watches a set of directories; `wait` blocks until events arrive, `wake` is called, or timeout."""

    def __init__(self) -> None:
        self._inotify = inotify_simple.INotify()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._dirs: dict[int, Path] = {}
        self._poll = select.poll()
        self._poll.register(self._inotify.fileno(), select.POLLIN)
        self._poll.register(self._wake_read, select.POLLIN)
        self._closed = False
        # Re-entrant: `wake` may run in a signal handler that interrupted `close` in the same thread.
        self._lock = threading.RLock()

    def watch(self, directory: Path, *, contents: bool = True) -> bool:
        """Start watching a directory; False when it does not exist (yet).

        `contents=False` leaves out files closed after writing: for /dev, where every write to
        /dev/null would otherwise wake the watcher, only entries appearing/going/changing mode matter.

        Always asks inotify: a directory removed and created again is a new inode that needs a new
        watch even while the old watch's IN_IGNORED is still unread (inotify returns the same wd
        when the inode is already watched).
        """
        try:
            mask = _MASK if contents else _MASK & ~_FLAGS.CLOSE_WRITE
            wd = self._inotify.add_watch(directory, mask | _FLAGS.ONLYDIR)
        except OSError:
            return False
        self._dirs[wd] = directory
        return True

    @property
    def wakeup_fd(self) -> int:
        """A non-blocking fd whose writes end `wait` (for signal.set_wakeup_fd)."""
        return self._wake_write

    def wake(self) -> None:
        """Make `wait` return; after `close` it does nothing (the fd number may belong to someone else now)."""
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_write, b"x")

    def wait(self, timeout: float | None) -> list[DirEvent]:
        """Events since the last call; empty on timeout or wake-up."""
        ready = self._poll.poll(None if timeout is None else max(0, int(timeout * 1000)))
        if any(fd == self._wake_read for fd, _ in ready):
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_read, 4096)
        if not any(fd == self._inotify.fileno() for fd, _ in ready):
            return []
        events = []
        for event in self._inotify.read(timeout=0):
            if event.mask & _FLAGS.Q_OVERFLOW:
                events.append(DirEvent(Path(), "", event.mask))
                continue
            directory = self._dirs.get(event.wd)
            if directory is None:
                continue
            if event.mask & _FLAGS.IGNORED:
                del self._dirs[event.wd]
            events.append(DirEvent(directory, event.name, event.mask))
        return events

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._inotify.close()
            for fd in (self._wake_read, self._wake_write):
                with contextlib.suppress(OSError):
                    os.close(fd)
