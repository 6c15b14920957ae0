"""Container runtime configuration that turns CDI on: render snippets, or edit a config file in place.

containerd reads CDI only when its CRI plugin has `enable_cdi = true`; where that table lives depends on
the config file's `version` (2: containerd 1.7, 3: containerd 2.x, which also loads version 2 files).
CRI-O always resolves CDI devices; it only needs to know the spec directories.
Edits go through tomlkit so the admin's comments and layout survive; the old file is kept as a backup.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import tomlkit
import tomlkit.container
import tomlkit.exceptions
import tomlkit.items

from cdi_fuse import defaults, errors

__all__ = [
    "CONTAINERD_CONFIG",
    "CONTAINERD_CRI_TABLES",
    "CRIO_DROP_IN",
    "DEFAULT_SPEC_DIRS",
    "ApplyResult",
    "apply_containerd_config",
    "apply_crio_config",
    "containerd_config_version",
    "render_containerd_config",
    "render_crio_config",
]

_log = logging.getLogger(__name__)

DEFAULT_SPEC_DIRS: Final[tuple[str, ...]] = tuple(str(d) for d in defaults.SPEC_DIRS)
CONTAINERD_CONFIG: Final = defaults.CONTAINERD_CONFIG
CRIO_DROP_IN: Final = defaults.CRIO_DROP_IN

# config version -> the table under [plugins] that holds enable_cdi / cdi_spec_dirs
CONTAINERD_CRI_TABLES: Final[dict[int, str]] = {
    2: "io.containerd.grpc.v1.cri",
    3: "io.containerd.cri.v1.runtime",
}
# containerd 2.x migrates version 2 files on load; containerd 1.7 cannot read version 3.
_NEW_FILE_CONTAINERD_VERSION: Final = 2

_CONTAINERD_RESTART: Final = "systemctl restart containerd"
_CRIO_RESTART: Final = "systemctl restart crio"
_CRIO_HEADER: Final = "# CDI spec directories CRI-O reads devices from (written by cdi-fuse)\n"


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did. `changes` lists `key: old -> new` lines; empty when the file already fit."""

    path: Path
    changes: tuple[str, ...]
    backup: Path | None
    restart_command: str

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def message(self) -> str:
        if not self.changed:
            return f"{self.path}: unchanged, CDI is already configured"
        lines = [f"{self.path}: updated"]
        lines += [f"  {change}" for change in self.changes]
        if self.backup is not None:
            lines.append(f"  previous file kept as {self.backup}")
        lines.append(f"restart the runtime to apply it: {self.restart_command}")
        return "\n".join(lines)


def render_containerd_config(*, version: int = 2, spec_dirs: Sequence[str] = DEFAULT_SPEC_DIRS) -> str:
    """A standalone config (or `imports` drop-in) enabling CDI for containerd config `version` 2 or 3."""
    table = _cri_table_name(version)
    doc = tomlkit.document()
    doc["version"] = version
    plugins = tomlkit.table(is_super_table=True)
    cri = tomlkit.table()
    cri["enable_cdi"] = True
    cri["cdi_spec_dirs"] = _spec_dir_array(spec_dirs)
    plugins[table] = cri
    doc["plugins"] = plugins
    return tomlkit.dumps(doc)


def render_crio_config(*, spec_dirs: Sequence[str] = DEFAULT_SPEC_DIRS) -> str:
    """A CRI-O drop-in (for /etc/crio/crio.conf.d/) naming the CDI spec directories."""
    doc = tomlkit.parse(_CRIO_HEADER)
    crio = tomlkit.table(is_super_table=True)
    runtime = tomlkit.table()
    runtime["cdi_spec_dirs"] = _spec_dir_array(spec_dirs)
    crio["runtime"] = runtime
    doc["crio"] = crio
    return tomlkit.dumps(doc)


def containerd_config_version(text: str, *, path: Path | None = None) -> int | None:
    """The `version` a containerd config declares; None for a file with no settings at all.

    A file with settings but no `version` key is version 1 (containerd's rule), which is refused.
    """
    doc = _parse(text, path)
    return _containerd_version(doc, path)


def apply_containerd_config(
    path: Path, *, spec_dirs: Sequence[str] = DEFAULT_SPEC_DIRS, version: int | None = None
) -> ApplyResult:
    """Turn CDI on in the containerd config at `path`, creating the file when it does not exist.

    The version is read from the file; `version` only chooses it for a new or empty file (default 2)
    and must otherwise match. Nothing is written when the file already has the settings.
    """
    if version is not None:
        _cri_table_name(version)
    text = _read_optional(path)
    doc = _parse(text, path)
    found = _containerd_version(doc, path)
    if found is None:
        chosen = version if version is not None else _NEW_FILE_CONTAINERD_VERSION
        # keep `version` first, as containerd writes it; comments of an empty file stay below it
        doc = _parse(f"version = {chosen}\n" + text, path)
    elif version is not None and version != found:
        raise errors.CdiFuseError(
            f"{str(path)!r} is a containerd config version {found}, not the version {version!r} asked for"
        )
    else:
        chosen = found
    changes = [] if found is not None else [f"version: (none) -> {chosen}"]
    cri = _table_at(doc, ("plugins", _cri_table_name(chosen)), path)
    changes += _set_values(cri, f"plugins.{_cri_table_name(chosen)!r}", spec_dirs, enable_cdi=True)
    return _write_if_changed(path, text, doc, changes, _CONTAINERD_RESTART)


def apply_crio_config(path: Path = CRIO_DROP_IN, *, spec_dirs: Sequence[str] = DEFAULT_SPEC_DIRS) -> ApplyResult:
    """Set `[crio.runtime] cdi_spec_dirs` in a CRI-O config or drop-in, creating it (and its dir) if needed."""
    text = _read_optional(path)
    doc = _parse(text if text.strip() else _CRIO_HEADER, path)
    runtime = _table_at(doc, ("crio", "runtime"), path)
    changes = _set_values(runtime, "crio.runtime", spec_dirs, enable_cdi=False)
    return _write_if_changed(path, text, doc, changes, _CRIO_RESTART)


def _cri_table_name(version: int) -> str:
    try:
        return CONTAINERD_CRI_TABLES[version]
    except KeyError:
        known = ", ".join(str(v) for v in CONTAINERD_CRI_TABLES)
        raise errors.CdiFuseError(f"unsupported containerd config version {version!r} (supported: {known})") from None


def _spec_dir_array(spec_dirs: Sequence[str]) -> tomlkit.items.Array:
    if isinstance(spec_dirs, str):
        raise errors.CdiFuseError(f"spec_dirs must be a list of directories, not the string {spec_dirs!r}")
    for spec_dir in spec_dirs:
        if not spec_dir.startswith("/"):
            raise errors.CdiFuseError(f"CDI spec directory {spec_dir!r} is not an absolute path")
    array = tomlkit.array()
    array.extend(spec_dirs)
    return array


def _parse(text: str, path: Path | None) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        where = f"{str(path)!r}" if path is not None else "config"
        raise errors.CdiFuseError(f"cannot parse {where} as TOML: {exc}") from exc


def _containerd_version(doc: tomlkit.TOMLDocument, path: Path | None) -> int | None:
    where = f"{str(path)!r}" if path is not None else "the containerd config"
    raw = doc.get("version")
    if raw is None:
        if not doc:
            return None
        raise errors.CdiFuseError(
            f"{where} has no 'version' key, so containerd reads it as config version 1, which has no CDI "
            "settings; convert it to version 2 (see `containerd config default`) and run this again"
        )
    version = raw.unwrap() if isinstance(raw, tomlkit.items.Item) else raw
    if not isinstance(version, int) or isinstance(version, bool):
        raise errors.CdiFuseError(f"{where} declares version {version!r}, expected an integer")
    if version == 1:
        raise errors.CdiFuseError(
            f"{where} is containerd config version 1, which has no CDI settings; convert it to version 2 "
            "(see `containerd config default`) and run this again"
        )
    _cri_table_name(version)
    return version


def _table_at(doc: tomlkit.TOMLDocument, keys: tuple[str, ...], path: Path) -> Any:
    """The (possibly new) table at `keys`; tomlkit tables and dotted-key containers are both accepted."""
    node: Any = doc
    walked: list[str] = []
    for key in keys:
        walked.append(key)
        if key not in node:
            node[key] = tomlkit.table(is_super_table=len(walked) < len(keys))
        node = node[key]
        if not isinstance(node, (tomlkit.items.Table, tomlkit.container.OutOfOrderTableProxy, dict)):
            dotted = ".".join(repr(k) for k in walked)
            raise errors.CdiFuseError(f"{str(path)!r}: {dotted} is a {type(node).__name__}, not a table")
    return node


def _set_values(table: Any, where: str, spec_dirs: Sequence[str], *, enable_cdi: bool) -> list[str]:
    wanted: dict[str, Any] = {}
    if enable_cdi:
        wanted["enable_cdi"] = True
    wanted["cdi_spec_dirs"] = list(spec_dirs)
    changes: list[str] = []
    for key, value in wanted.items():
        current = table.get(key)
        current_plain = current.unwrap() if isinstance(current, tomlkit.items.Item) else current
        if current_plain == value and type(current_plain) is type(value):
            continue
        indent = _key_indent(table)
        table[key] = _spec_dir_array(spec_dirs) if key == "cdi_spec_dirs" else value
        if current is None and indent:
            table[key].trivia.indent = indent
        old = "(unset)" if current is None else tomlkit.item(current_plain).as_string()
        changes.append(f"{where}.{key}: {old} -> {tomlkit.item(value).as_string()}")
    return changes


def _key_indent(table: Any) -> str:
    """The indentation of the table's existing keys, so an added key lines up with them."""
    body = getattr(getattr(table, "value", None), "body", ())
    for key, item in body:
        if key is not None and isinstance(item, tomlkit.items.Item) and not isinstance(item, tomlkit.items.Table):
            return str(item.trivia.indent)
    return ""


def _read_optional(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.CdiFuseError(f"cannot read {str(path)!r}: {exc}") from exc


def _write_if_changed(
    path: Path, old_text: str, doc: tomlkit.TOMLDocument, changes: list[str], restart: str
) -> ApplyResult:
    if not changes:
        _log.info("%s already enables CDI", path)
        return ApplyResult(path=path, changes=(), backup=None, restart_command=restart)
    new_text = tomlkit.dumps(doc)
    backup = _backup(path) if path.exists() and old_text.strip() else None
    _atomic_write(path, new_text)
    _log.info("updated %s (%d change(s), backup %s)", path, len(changes), backup)
    return ApplyResult(path=path, changes=tuple(changes), backup=backup, restart_command=restart)


def _backup(path: Path) -> Path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(100):
        candidate = path.with_name(f"{path.name}.bak-{stamp}" + (f".{attempt}" if attempt else ""))
        try:
            with candidate.open("xb") as out, path.open("rb") as src:
                shutil.copyfileobj(src, out)
        except FileExistsError:
            continue
        except OSError as exc:
            raise errors.CdiFuseError(f"cannot back up {str(path)!r} to {str(candidate)!r}: {exc}") from exc
        shutil.copymode(path, candidate)
        return candidate
    raise errors.CdiFuseError(f"cannot find a free backup name for {str(path)!r}")


def _atomic_write(path: Path, text: str) -> None:
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _temp_file_in(path.parent, prefix=f".{path.name}.") as (fd, tmp):
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise errors.CdiFuseError(f"cannot write {str(path)!r}: {exc}") from exc


@contextlib.contextmanager
def _temp_file_in(directory: Path, *, prefix: str) -> Iterator[tuple[int, Path]]:
    fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    tmp = Path(name)
    try:
        yield fd, tmp
    finally:
        # after os.replace the temp name is gone; on failure this removes the partial file
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
