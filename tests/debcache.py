"""Debian packages for the tests, fetched without changing the system.

Some tests need a package this machine's release does not ship (bookworm has no containerd with CDI, no
Go new enough for the CDI library's source, ...). ``ensure_debs`` fetches exact packages from another Debian
suite with ``apt-get download`` against a private sources list, state and cache dir (the machine's apt setup
is read, never written) and unpacks them with ``dpkg -x`` into a cache dir that outlives the checkout: CI runs
a fresh clone on the same machine, so a repo-local cache would be refetched every time. A lock file keeps two
test processes from unpacking the same set at the same time; a half-unpacked set is never used (marker file,
staging dir renamed into place).

No dependency resolution: callers name every package they need.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE_ROOT = Path("/var/cache/cdi-fuse-tests")
CACHE_ENV = "CDI_FUSE_TEST_CACHE"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
COMPLETE_MARKER = ".complete"
LOCK_TIMEOUT_S = 900.0
APT_TIMEOUT_S = 600.0


class DebUnavailableError(Exception):
    """The packages could not be fetched or unpacked here; the message says why (tests skip with it)."""


@dataclass(frozen=True)
class Mirror:
    uri: str
    keyring: Path | None


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT)


def _os_codename(os_release: Path) -> str | None:
    try:
        text = os_release.read_text()
    except OSError:
        return None
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.MULTILINE)
    return match.group(1) if match else None


def _one_line_entries(text: str) -> Iterator[tuple[str, list[str], str | None]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        options = re.search(r"\[([^\]]*)\]", line)
        signed_by = None
        if options:
            for option in options.group(1).split():
                if option.startswith("signed-by="):
                    signed_by = option.split("=", 1)[1]
            line = line[: options.start()] + line[options.end() :]
        fields = line.split()
        if len(fields) >= 3:
            yield fields[1], [fields[2]], signed_by


def _deb822_entries(text: str) -> Iterator[tuple[str, list[str], str | None]]:
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in paragraph.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += "\n" + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split(), fields.get("signed-by")


def debian_mirror(apt_etc: Path = Path("/etc/apt"), os_release: Path = Path("/etc/os-release")) -> Mirror:
    """The Debian archive mirror this machine already uses (its main suite's URI), else deb.debian.org."""
    codename = _os_codename(os_release)
    entries: list[tuple[str, list[str], str | None]] = []
    one_line_files = [apt_etc / "sources.list", *sorted((apt_etc / "sources.list.d").glob("*.list"))]
    for path in one_line_files:
        if path.is_file():
            entries.extend(_one_line_entries(path.read_text(errors="replace")))
    for path in sorted((apt_etc / "sources.list.d").glob("*.sources")):
        entries.extend(_deb822_entries(path.read_text(errors="replace")))
    for uri, suites, signed_by in entries:
        if codename in suites and "security" not in uri:
            keyring = Path(signed_by) if signed_by and signed_by.startswith("/") else None
            if keyring is None and DEFAULT_KEYRING.is_file():
                keyring = DEFAULT_KEYRING
            return Mirror(uri.rstrip("/"), keyring)
    return Mirror(DEFAULT_MIRROR, DEFAULT_KEYRING if DEFAULT_KEYRING.is_file() else None)


@contextmanager
def locked(lock_path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created if needed); DebUnavailableError after `timeout_s`."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    held = f"another process held {lock_path} for more than {timeout_s:.0f}s"
                    raise DebUnavailableError(held) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_tool(args: Sequence[str], cwd: Path, timeout_s: float = APT_TIMEOUT_S) -> str:
    """Run apt-get/dpkg; DebUnavailableError with the last lines of its output when it fails."""
    try:
        result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DebUnavailableError(f"{args[0]} failed to run: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise DebUnavailableError(f"{' '.join(args)} exited {result.returncode}: {' | '.join(detail)}")
    return result.stdout


def download_debs(work: Path, mirror: Mirror, suite: str, packages: Sequence[str]) -> list[Path]:
    """``apt-get download`` exact `packages` from `suite` into `work`, using only private apt state."""
    if shutil.which("apt-get") is None:
        raise DebUnavailableError("apt-get is not installed")
    sources = work / "sources.list"
    signed_by = f"[signed-by={mirror.keyring}] " if mirror.keyring else ""
    sources.write_text(f"deb {signed_by}{mirror.uri} {suite} main\n")
    for sub in ("state/lists/partial", "cache/archives/partial"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    apt = [
        "apt-get",
        "-q",
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State={work / 'state'}",
        "-o", "Dir::State::status=/dev/null",
        "-o", f"Dir::Cache={work / 'cache'}",
        "-o", "APT::Sandbox::User=root",
        "-o", "Acquire::Retries=3",
    ]  # fmt: skip
    run_tool([*apt, "update"], work)
    run_tool([*apt, "download", *packages], work)
    debs = []
    for package in packages:
        found = sorted(work.glob(f"{package}_*.deb"))
        if not found:
            raise DebUnavailableError(f"apt-get download {package} produced no .deb in {work}")
        debs.append(found[-1])
    return debs


def _set_dir(root: Path, name: str, suite: str, packages: Sequence[str]) -> Path:
    key = hashlib.sha256("\n".join([suite, *sorted(packages)]).encode()).hexdigest()[:12]
    return root / f"{name}-{suite}-{key}"


def unpack_debs(debs: Sequence[Path], target: Path) -> Path:
    """``dpkg -x`` every .deb into `target` (atomically: a staging dir renamed into place)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for deb in debs:
            run_tool(["dpkg", "-x", str(deb), str(staging)], target.parent)
        (staging / COMPLETE_MARKER).write_text("".join(deb.name + "\n" for deb in debs))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_debs(name: str, packages: Sequence[str], *, suite: str, root: Path | None = None) -> Path:
    """The unpacked tree of exact `packages` from Debian `suite`: from the cache, else fetched now.

    `name` labels the set in the cache dir (e.g. "containerd"). Returns the directory the packages were
    unpacked into (its usr/bin, usr/lib/... mirror the packages' paths). The marker file lists the .debs.
    """
    root = root or cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DebUnavailableError(f"cannot create the cache dir {root}: {exc}") from exc
    target = _set_dir(root, name, suite, packages)
    with locked(root / f"{target.name}.lock"):
        if (target / COMPLETE_MARKER).is_file():
            return target
        with tempfile.TemporaryDirectory(prefix="apt-", dir=root) as work:
            debs = download_debs(Path(work), debian_mirror(), suite, packages)
            return unpack_debs(debs, target)


def installed_debs(tree: Path) -> list[str]:
    """The .deb file names a tree from `ensure_debs` was unpacked from (their versions included)."""
    return (tree / COMPLETE_MARKER).read_text().split()


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3:
        sys.exit("usage: python -m tests.debcache SUITE PACKAGE...")
    tree = ensure_debs("manual", sys.argv[2:], suite=sys.argv[1])
    print(tree)
