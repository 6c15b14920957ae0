"""DirWatcher: inotify events for entries of watched directories, wake-ups and timeouts."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdi_fuse.node import watch


@pytest.fixture
def watcher() -> Iterator[watch.DirWatcher]:
    dir_watcher = watch.DirWatcher()
    yield dir_watcher
    dir_watcher.close()


def wait_for_event(
    dir_watcher: watch.DirWatcher, predicate: Callable[[watch.DirEvent], bool], timeout: float = 5.0
) -> watch.DirEvent:
    """Collect events until one matches (events may arrive in several batches)."""
    deadline = time.monotonic() + timeout
    seen: list[watch.DirEvent] = []
    while (left := deadline - time.monotonic()) > 0:
        for event in dir_watcher.wait(left):
            seen.append(event)
            if predicate(event):
                return event
    raise AssertionError(f"no matching event in {timeout}s; saw {seen}")


@pytest.mark.parametrize(
    ("setup", "action", "name", "flag"),
    [
        pytest.param(None, lambda d: (d / "a.yaml").write_text("x"), "a.yaml", "created", id="create"),
        pytest.param("a.yaml", lambda d: (d / "a.yaml").unlink(), "a.yaml", "removed", id="delete"),
        pytest.param("a.yaml", lambda d: os.rename(d / "a.yaml", d / "b.yaml"), "a.yaml", "removed", id="rename-from"),
        pytest.param("a.yaml", lambda d: os.rename(d / "a.yaml", d / "b.yaml"), "b.yaml", "created", id="rename-to"),
        pytest.param("a.yaml", lambda d: os.replace(d / "a.yaml", d / "c.yaml"), "c.yaml", "created", id="replace"),
    ],
)
def test_entry_events(
    watcher: watch.DirWatcher,
    tmp_path: Path,
    setup: str | None,
    action: Callable[[Path], object],
    name: str,
    flag: str,
) -> None:
    if setup is not None:
        (tmp_path / setup).write_text("old")
    assert watcher.watch(tmp_path)
    action(tmp_path)
    event = wait_for_event(watcher, lambda e: e.name == name and getattr(e, flag))
    assert event.directory == tmp_path


def test_rewrite_in_place_reports_the_entry(watcher: watch.DirWatcher, tmp_path: Path) -> None:
    target = tmp_path / "spec.yaml"
    target.write_text("old")
    watcher.watch(tmp_path)
    target.write_text("new")
    event = wait_for_event(watcher, lambda e: e.name == "spec.yaml")
    assert not event.created and not event.removed


def test_directory_removal_is_reported_and_unwatched(watcher: watch.DirWatcher, tmp_path: Path) -> None:
    directory = tmp_path / "cdi"
    directory.mkdir()
    watcher.watch(directory)
    directory.rmdir()
    # IN_IGNORED (0x8000), the last event of a removed watch: the watch is gone after it
    event = wait_for_event(watcher, lambda e: bool(e.mask & 0x8000))
    assert event.directory_gone and event.directory == directory and event.name == ""
    directory.mkdir()  # the same name again, not watched again: nothing in it is reported
    (directory / "spec.yaml").write_text("x")
    assert watcher.wait(0.2) == []


def test_missing_directory_is_not_watched(watcher: watch.DirWatcher, tmp_path: Path) -> None:
    assert watcher.watch(tmp_path / "absent") is False
    (tmp_path / "absent").mkdir()
    (tmp_path / "absent" / "spec.yaml").write_text("x")
    assert watcher.wait(0.2) == []


def test_watch_twice_is_one_watch(watcher: watch.DirWatcher, tmp_path: Path) -> None:
    assert watcher.watch(tmp_path) and watcher.watch(tmp_path)
    (tmp_path / "x").write_text("1")
    events = wait_for_event(watcher, lambda e: e.created)
    assert events.name == "x"


def test_timeout_returns_empty(watcher: watch.DirWatcher, tmp_path: Path) -> None:
    watcher.watch(tmp_path)
    started = time.monotonic()
    assert watcher.wait(0.05) == []
    assert time.monotonic() - started >= 0.04


def test_events_outside_watched_dirs_are_not_reported(watcher: watch.DirWatcher, tmp_path: Path) -> None:
    watched, other = tmp_path / "watched", tmp_path / "other"
    watched.mkdir()
    other.mkdir()
    watcher.watch(watched)
    (other / "x.yaml").write_text("1")
    assert watcher.wait(0.1) == []


def test_wake_unblocks_wait_from_another_thread(watcher: watch.DirWatcher, tmp_path: Path) -> None:
    watcher.watch(tmp_path)
    result: list[list[watch.DirEvent]] = []
    waiting = threading.Thread(target=lambda: result.append(watcher.wait(30)))
    started = time.monotonic()
    waiting.start()
    watcher.wake()
    waiting.join(5)
    assert not waiting.is_alive(), "wait() did not return after wake()"
    assert result == [[]]
    assert time.monotonic() - started < 5


def test_wake_before_wait_is_not_lost(watcher: watch.DirWatcher) -> None:
    watcher.wake()
    watcher.wake()  # a full pipe or repeated wakes never raise
    assert watcher.wait(10) == []
    # the wake-up was consumed: the next wait times out instead of returning at once
    started = time.monotonic()
    assert watcher.wait(0.05) == []
    assert time.monotonic() - started >= 0.04


def test_events_and_wake_together_return_the_events(watcher: watch.DirWatcher, tmp_path: Path) -> None:
    watcher.watch(tmp_path)
    (tmp_path / "a.json").write_text("{}")
    watcher.wake()
    event = wait_for_event(watcher, lambda e: e.name == "a.json" and e.created)
    assert event.directory == tmp_path


def test_directory_recreated_is_watched_again_before_the_old_watch_is_dropped(
    watcher: watch.DirWatcher, tmp_path: Path
) -> None:
    """Regression: watch() trusted its own table while IN_IGNORED of the removed directory was still
    unread, so the new directory was never watched (spec dir removed, restored, then not watched)."""
    directory = tmp_path / "cdi"
    directory.mkdir()
    watcher.watch(directory)
    directory.rmdir()
    directory.mkdir()
    assert watcher.watch(directory)  # before reading the removal events
    (directory / "spec.yaml").write_text("x")
    event = wait_for_event(watcher, lambda e: e.name == "spec.yaml" and e.created)
    assert event.directory == directory


def test_watch_without_contents_ignores_writes_but_sees_nodes(tmp_path: Path) -> None:
    """Regression: watching /dev for writes woke the plugin at every write to /dev/null."""
    target = tmp_path / "busy"
    target.write_text("x")
    watcher = watch.DirWatcher()
    try:
        assert watcher.watch(tmp_path, contents=False)
        target.write_text("written again")
        assert watcher.wait(0.2) == []
        (tmp_path / "fuse").touch()
        events = watcher.wait(2.0)
        assert [(e.name, e.created) for e in events] == [("fuse", True)]
    finally:
        watcher.close()


def test_wake_after_close_does_nothing(tmp_path: Path) -> None:
    """Regression: wake() after close() wrote to a closed fd number, which may belong to another file by then."""
    watcher = watch.DirWatcher()
    watcher.close()
    reused = os.open(tmp_path / "victim", os.O_CREAT | os.O_WRONLY)  # likely takes a freed fd number
    try:
        watcher.wake()
        watcher.close()  # twice is fine too
    finally:
        os.close(reused)
    assert (tmp_path / "victim").read_bytes() == b""


def test_overflow_is_reported(watcher: watch.DirWatcher, tmp_path: Path) -> None:
    event = watch.DirEvent(Path(), "", 0x4000)  # IN_Q_OVERFLOW: the kernel dropped events
    assert event.overflow and not event.created and not event.removed
