"""Fetch a containerd with CDI support (>= 1.7.2) without changing the system.

Debian bookworm ships containerd 1.6, which has no CDI. Debian trixie's ``containerd`` .deb is fetched with
``apt-get download`` against a private sources list, state and cache dir (the machine's apt setup is read,
never written), and unpacked with ``dpkg -x`` into a cache dir that outlives the checkout: CI runs a fresh
clone on the same machine, so a repo-local cache would be refetched every time. A lock file keeps two test
processes from unpacking at the same time.

Run ``python -m tests.e2e.containerd.fetch`` to fill the cache by hand.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEBIAN_SUITE = "trixie"
PACKAGE = "containerd"
MIN_VERSION = (1, 7, 2)
DEFAULT_CACHE_ROOT = Path("/var/cache/cdi-fuse-tests")
CACHE_ENV = "CDI_FUSE_TEST_CACHE"
# Point this at a directory holding containerd, ctr and containerd-shim-runc-v2 to skip the download.
BIN_DIR_ENV = "CDI_FUSE_CONTAINERD_BIN_DIR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
COMPLETE_MARKER = ".complete"
LOCK_TIMEOUT_S = 600.0
APT_TIMEOUT_S = 600.0
_VERSION_RE = re.compile(r"\bv?(\d+)\.(\d+)\.(\d+)")


class ContainerdUnavailableError(Exception):
    """containerd could not be fetched or does not work here; the message says why (tests skip with it)."""


@dataclass(frozen=True)
class Mirror:
    uri: str
    keyring: Path | None


@dataclass(frozen=True)
class ContainerdInstall:
    bin_dir: Path
    version: str  # as `containerd --version` prints it, e.g. "1.7.24~ds1"
    version_tuple: tuple[int, int, int]

    @property
    def containerd(self) -> Path:
        return self.bin_dir / "containerd"

    @property
    def ctr(self) -> Path:
        return self.bin_dir / "ctr"


def parse_version(text: str) -> tuple[str, tuple[int, int, int]]:
    """Pick the version out of ``containerd --version`` output (``containerd <module> <version> <rev>``)."""
    fields = text.split()
    candidates = fields[2:3] + fields
    for field in candidates:
        match = _VERSION_RE.match(field)
        if match:
            major, minor, patch = (int(group) for group in match.groups())
            return field.removeprefix("v"), (major, minor, patch)
    raise ContainerdUnavailableError(f"cannot read a version from containerd --version output {text!r}")


def probe_version(containerd: Path) -> tuple[str, tuple[int, int, int]]:
    try:
        out = subprocess.run(
            [str(containerd), "--version"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ContainerdUnavailableError(f"{containerd} --version failed: {exc}") from exc
    return parse_version(out)


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


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT)


@contextmanager
def _locked(lock_path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ContainerdUnavailableError(
                        f"another process held {lock_path} for more than {timeout_s:.0f}s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install_from(directory: Path) -> ContainerdInstall:
    bin_dir = directory / "usr" / "bin"
    version, version_tuple = probe_version(bin_dir / "containerd")
    return ContainerdInstall(bin_dir, version, version_tuple)


def _cached_installs(root: Path) -> list[Path]:
    return sorted(
        (path for path in root.glob(f"{PACKAGE}-*") if (path / COMPLETE_MARKER).is_file()),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )


def _run_apt(args: list[str], work: Path) -> str:
    try:
        result = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ContainerdUnavailableError(f"{' '.join(args[:1])} failed to run: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ContainerdUnavailableError(f"{' '.join(args)} exited {result.returncode}: {' | '.join(detail)}")
    return result.stdout


def download_deb(work: Path, mirror: Mirror) -> Path:
    """``apt-get download`` the trixie containerd .deb into ``work`` using only private apt state."""
    if shutil.which("apt-get") is None:
        raise ContainerdUnavailableError("apt-get is not installed")
    sources = work / "sources.list"
    signed_by = f"[signed-by={mirror.keyring}] " if mirror.keyring else ""
    sources.write_text(f"deb {signed_by}{mirror.uri} {DEBIAN_SUITE} main\n")
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
    _run_apt([*apt, "update"], work)
    _run_apt([*apt, "download", PACKAGE], work)
    debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise ContainerdUnavailableError(f"apt-get download {PACKAGE} produced no .deb in {work}")
    return debs[-1]


def unpack_deb(deb: Path, root: Path) -> Path:
    """``dpkg -x`` the .deb into ``root/containerd-<version>`` (atomically, via a temp dir + rename)."""
    version = deb.name.split("_")[1]
    target = root / f"{PACKAGE}-{version}"
    staging = Path(tempfile.mkdtemp(prefix=f".{PACKAGE}-", dir=root))
    try:
        _run_apt(["dpkg", "-x", str(deb), str(staging)], root)
        (staging / COMPLETE_MARKER).write_text(deb.name + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_containerd(root: Path | None = None) -> ContainerdInstall:
    """A working containerd >= 1.7.2: from $CDI_FUSE_CONTAINERD_BIN_DIR, the cache, or a fresh download."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        version, version_tuple = probe_version(Path(override) / "containerd")
        install = ContainerdInstall(Path(override), version, version_tuple)
    else:
        root = root or cache_root()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ContainerdUnavailableError(f"cannot create the cache dir {root}: {exc}") from exc
        with _locked(root / f"{PACKAGE}.lock"):
            cached = _cached_installs(root)
            if cached:
                install = _install_from(cached[0])
            else:
                with tempfile.TemporaryDirectory(prefix="apt-", dir=root) as work:
                    deb = download_deb(Path(work), debian_mirror())
                    install = _install_from(unpack_deb(deb, root))
    if install.version_tuple < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        raise ContainerdUnavailableError(f"containerd {install.version} is older than {wanted} (no CDI)")
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if not os.access(install.bin_dir / tool, os.X_OK):
            raise ContainerdUnavailableError(f"{install.bin_dir / tool} is missing or not executable")
    return install


if __name__ == "__main__":
    found = ensure_containerd()
    print(f"containerd {found.version} in {found.bin_dir}")
