"""Container runtime configuration that turns CDI on: render snippets, or edit a config file in place.

containerd reads CDI only when its CRI plugin has `enable_cdi = true`; where that table lives depends on
the config file's `version` (2: containerd 1.7, 3: containerd 2.x, which also loads version 2 files).
CRI-O always resolves CDI devices; it only needs to know the spec directories.

Edits go through tomlkit so the admin's comments and layout survive; `cdi_spec_dirs` gains the missing
directories and keeps the others. Before anything is written the result is re-read with tomllib and must
equal the old settings plus exactly the CDI settings, so an edit tomlkit gets wrong is refused rather
than written. The old file is kept as a backup; the new one replaces it atomically (cdi_fuse.files).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import logging
import os
import re
import shutil
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import tomlkit
import tomlkit.container
import tomlkit.exceptions
import tomlkit.items

from cdi_fuse import defaults, errors, files
from cdi_fuse.runtime import cri

__all__ = [
    "CONTAINERD_CRI_TABLES",
    "ApplyResult",
    "ConfigVersion",
    "apply_containerd_config",
    "apply_crio_config",
    "config_version_for_runtime",
    "containerd_snippet",
    "render_containerd_config",
    "render_crio_config",
]

_log = logging.getLogger(__name__)

_SPEC_DIRS: Final[tuple[str, ...]] = tuple(str(d) for d in defaults.SPEC_DIRS)

# config version -> the table under [plugins] that holds enable_cdi / cdi_spec_dirs
CONTAINERD_CRI_TABLES: Final[dict[int, str]] = {
    2: "io.containerd.grpc.v1.cri",
    3: "io.containerd.cri.v1.runtime",
}
# containerd 2.x migrates version 2 files on load; containerd 1.7 cannot read version 3.
_READ_BY_BOTH: Final = 2
_FIRST_VERSION_3_RELEASE: Final = (2, 0)

_CONTAINERD_RESTART: Final = "systemctl restart containerd"
_CRIO_RESTART: Final = "systemctl restart crio"
_CRIO_HEADER: Final = "# CDI spec directories CRI-O reads devices from (written by cdi-fuse)\n"
_DIR_MODE: Final = 0o755

_TableLike = (tomlkit.items.Table, tomlkit.items.InlineTable, tomlkit.container.OutOfOrderTableProxy)


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did. `changes` lists `key: old -> new` lines; empty when the file already fit."""

    path: Path
    changes: tuple[str, ...]
    backup: Path | None
    restart_command: str
    notes: tuple[str, ...] = ()  # e.g. how the config version of a new file was chosen

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def message(self) -> str:
        if not self.changed:
            return f"{self.path}: unchanged, CDI is already configured"
        lines = [f"{self.path}: updated"]
        lines += [f"  {change}" for change in self.changes]
        lines += [f"  ({note})" for note in self.notes]
        if self.backup is not None:
            lines.append(f"  previous file kept as {self.backup}")
        lines.append(f"restart the runtime to apply it: {self.restart_command}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ConfigVersion:
    """A containerd config version and why it was chosen."""

    version: int
    reason: str


def config_version_for_runtime(endpoint: str | None, *, timeout: float = defaults.RUNTIME_TIMEOUT_S) -> ConfigVersion:
    """The config version the containerd at `endpoint` expects: 3 for 2.x; 2 for 1.x or when it cannot be asked."""
    fallback = f"version {_READ_BY_BOTH} is read by containerd 1.7 and 2.x (--config-version 3: 2.x's own layout)"
    if endpoint is None:
        return ConfigVersion(_READ_BY_BOTH, f"no containerd endpoint given; {fallback}")
    try:
        info = cri.query_runtime(endpoint, timeout=timeout)
    except errors.RuntimeQueryError as exc:
        return ConfigVersion(_READ_BY_BOTH, f"containerd could not be asked ({exc}); {fallback}")
    release = cri.parse_version(info.runtime_version)
    label = f"{info.runtime_name} {info.runtime_version} at {endpoint}"
    if info.runtime_name.strip().lower() != "containerd" or release is None:
        return ConfigVersion(_READ_BY_BOTH, f"{label} is not a containerd release this knows; {fallback}")
    version = 3 if release >= _FIRST_VERSION_3_RELEASE else 2
    return ConfigVersion(version, f"{label} reads config version {version}")


def render_containerd_config(*, version: int = 2, spec_dirs: Sequence[str] = _SPEC_DIRS) -> str:
    """A standalone config (or `imports` drop-in) enabling CDI for containerd config `version` 2 or 3."""
    table = _cri_table_name(version)
    doc = tomlkit.document()
    doc["version"] = version
    plugins = tomlkit.table(is_super_table=True)
    cri_table = tomlkit.table()
    cri_table["enable_cdi"] = True
    cri_table["cdi_spec_dirs"] = _spec_dir_array(_checked_spec_dirs(spec_dirs))
    plugins[table] = cri_table
    doc["plugins"] = plugins
    return tomlkit.dumps(doc)


def containerd_snippet(
    *,
    version: int | None = None,
    spec_dirs: Sequence[str] = _SPEC_DIRS,
    runtime_endpoint: str | None = None,
    timeout: float = defaults.RUNTIME_TIMEOUT_S,
) -> str:
    """The config that enables CDI, headed by a comment saying which version and why.

    Without `version` the containerd at `runtime_endpoint` is asked which version it reads.
    """
    if version is None:
        choice = config_version_for_runtime(runtime_endpoint, timeout=timeout)
    else:
        choice = ConfigVersion(version, f"config version {version}, as asked")
    body = render_containerd_config(version=choice.version, spec_dirs=spec_dirs)
    return f"# {choice.reason}\n{body}"


def render_crio_config(*, spec_dirs: Sequence[str] = _SPEC_DIRS) -> str:
    """A CRI-O drop-in (for /etc/crio/crio.conf.d/) naming the CDI spec directories."""
    doc = tomlkit.parse(_CRIO_HEADER)
    crio = tomlkit.table(is_super_table=True)
    runtime = tomlkit.table()
    runtime["cdi_spec_dirs"] = _spec_dir_array(_checked_spec_dirs(spec_dirs))
    crio["runtime"] = runtime
    doc["crio"] = crio
    return tomlkit.dumps(doc)


def apply_containerd_config(
    path: Path,
    *,
    spec_dirs: Sequence[str] = _SPEC_DIRS,
    version: int | None = None,
    runtime_endpoint: str | None = None,
    timeout: float = defaults.RUNTIME_TIMEOUT_S,
) -> ApplyResult:
    """Turn CDI on in the containerd config at `path`, creating the file when it does not exist.

    The version is read from the file and `version`, when given, must match it. A new or empty file gets
    `version`, else the one the containerd at `runtime_endpoint` reads, else 2 (read by 1.7 and 2.x).
    Nothing is written when the file already has the settings.
    """
    dirs = _checked_spec_dirs(spec_dirs)
    if version is not None:
        _cri_table_name(version)
    text = _read_optional(path)
    old_data = _parse_strictly(text, path)
    doc = _parse(text, path)
    declared = _declared_version(doc, path, lambda: _target_version(version, runtime_endpoint, timeout))
    notes: list[str] = []
    changes: list[str] = []
    if declared is None:
        if version is None:
            choice = config_version_for_runtime(runtime_endpoint, timeout=timeout)
            version = choice.version
            notes.append(choice.reason)
        # keep `version` first, as containerd writes it; comments of an empty file stay below it
        doc = _parse(f"version = {version}\n" + text, path)
        changes.append(f"version: (none) -> {version}")
    elif version is not None and version != declared:
        raise errors.RuntimeConfigVersionError(
            f"{str(path)!r} is a containerd config version {declared}, not the version {version!r} asked for",
            path=path,
        )
    else:
        version = declared
    table = _cri_table_name(version)
    keys = ("plugins", table)
    wanted = {"enable_cdi": True, "cdi_spec_dirs": dirs}
    changes += _ensure_settings(_table_at(doc, keys, path), f"plugins.{table!r}", wanted, path)
    expected = _with_settings(old_data, keys, wanted, version=version)
    return _write_if_changed(path, text, doc, changes, expected, _CONTAINERD_RESTART, notes)


def apply_crio_config(path: Path = defaults.CRIO_DROP_IN, *, spec_dirs: Sequence[str] = _SPEC_DIRS) -> ApplyResult:
    """Add the spec dirs to `[crio.runtime] cdi_spec_dirs` in a CRI-O config or drop-in, creating it if needed."""
    dirs = _checked_spec_dirs(spec_dirs)
    text = _read_optional(path)
    old_data = _parse_strictly(text, path)
    doc = _parse(text if text.strip() else _CRIO_HEADER, path)
    keys = ("crio", "runtime")
    wanted: dict[str, Any] = {"cdi_spec_dirs": dirs}
    changes = _ensure_settings(_table_at(doc, keys, path), "crio.runtime", wanted, path)
    expected = _with_settings(old_data, keys, wanted, version=None)
    return _write_if_changed(path, text, doc, changes, expected, _CRIO_RESTART, [])


# --- versions ---------------------------------------------------------------------------------------


def _cri_table_name(version: int) -> str:
    try:
        return CONTAINERD_CRI_TABLES[version]
    except KeyError:
        known = ", ".join(str(v) for v in CONTAINERD_CRI_TABLES)
        raise errors.RuntimeConfigVersionError(
            f"unsupported containerd config version {version!r} (supported: {known})"
        ) from None


def _target_version(version: int | None, endpoint: str | None, timeout: float) -> ConfigVersion:
    if version is not None:
        return ConfigVersion(version, "as asked")
    return config_version_for_runtime(endpoint, timeout=timeout)


def _convert_hint(target: ConfigVersion) -> str:
    if target.version == 3:
        return "convert it to version 3 (`containerd config migrate` of containerd 2.x prints it converted)"
    return "convert it to version 2 (see `containerd config default` of containerd 1.7)"


def _declared_version(doc: tomlkit.TOMLDocument, path: Path, target: Any) -> int | None:
    """The file's `version`; None for a file with no settings. Version 1 (explicit or implied) is refused.

    `target` is called only to word the refusal: it says which version to convert to.
    """
    where = repr(str(path))
    raw = doc.get("version")
    if raw is None:
        if not doc:
            return None
        chosen: ConfigVersion = target()
        raise errors.RuntimeConfigVersionError(
            f"{where} has no 'version' key, so containerd reads it as config version 1, which has no CDI "
            f"settings; {_convert_hint(chosen)} and run this again ({chosen.reason})",
            path=path,
        )
    version = raw.unwrap() if isinstance(raw, tomlkit.items.Item) else raw
    if not isinstance(version, int) or isinstance(version, bool):
        raise errors.RuntimeConfigVersionError(f"{where} declares version {version!r}, expected an integer", path=path)
    if version == 1:
        chosen = target()
        raise errors.RuntimeConfigVersionError(
            f"{where} is containerd config version 1, which has no CDI settings; {_convert_hint(chosen)} "
            f"and run this again ({chosen.reason})",
            path=path,
        )
    if version not in CONTAINERD_CRI_TABLES:
        known = ", ".join(str(v) for v in CONTAINERD_CRI_TABLES)
        raise errors.RuntimeConfigVersionError(
            f"{where} declares containerd config version {version}, which this does not know (supported: {known})",
            path=path,
        )
    return version


# --- values -----------------------------------------------------------------------------------------


def _checked_spec_dirs(spec_dirs: Sequence[str]) -> list[str]:
    if isinstance(spec_dirs, str):
        raise errors.RuntimeConfigValueError(f"spec_dirs must be a list of directories, not the string {spec_dirs!r}")
    for spec_dir in spec_dirs:
        if not spec_dir.startswith("/"):
            raise errors.RuntimeConfigValueError(f"CDI spec directory {spec_dir!r} is not an absolute path")
    return list(dict.fromkeys(spec_dirs))


def _spec_dir_array(spec_dirs: Sequence[str]) -> tomlkit.items.Array:
    array = tomlkit.array()
    array.extend(spec_dirs)
    return array


def _plain(value: Any) -> Any:
    return value.unwrap() if isinstance(value, tomlkit.items.Item) else value


def _toml(value: Any) -> str:
    return str(tomlkit.item(value).as_string())


# --- reading ----------------------------------------------------------------------------------------


def _read_optional(path: Path) -> str:
    if path.is_symlink():
        raise errors.RuntimeConfigWriteError(
            f"{str(path)!r} is a symbolic link (to {os.readlink(path)!r}): refusing to replace the link; "
            f"edit the file it points to ({str(path.resolve())!r}) instead",
            path=path,
        )
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError as exc:
        raise errors.RuntimeConfigReadError(f"{str(path)!r} is not UTF-8 text: {exc}", path=path) from exc
    except OSError as exc:
        raise errors.RuntimeConfigReadError(f"cannot read {str(path)!r}: {exc.strerror or exc}", path=path) from exc


def _parse_strictly(text: str, path: Path) -> dict[str, Any]:
    """The settings as a TOML 1.0 reader (the runtimes' kind) sees them; the reference for the check."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.RuntimeConfigSyntaxError(f"cannot parse {str(path)!r} as TOML: {exc}", path=path) from exc


def _parse(text: str, path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise errors.RuntimeConfigSyntaxError(f"cannot parse {str(path)!r} as TOML: {exc}", path=path) from exc


# --- editing ----------------------------------------------------------------------------------------


def _table_at(doc: tomlkit.TOMLDocument, keys: tuple[str, ...], path: Path) -> Any:
    """The (possibly new) table at `keys`: header tables, implicit ones, dotted keys and inline tables alike."""
    node: Any = doc
    walked: list[str] = []
    for key in keys:
        walked.append(key)
        if key not in node:
            inline = isinstance(node, tomlkit.items.InlineTable)
            node[key] = tomlkit.inline_table() if inline else tomlkit.table(is_super_table=len(walked) < len(keys))
        node = node[key]
        if not isinstance(node, _TableLike):
            dotted = ".".join(repr(k) for k in walked)
            kind = "an array of tables" if isinstance(node, tomlkit.items.AoT) else f"a {type(_plain(node)).__name__}"
            raise errors.RuntimeConfigLayoutError(f"{str(path)!r}: {dotted} is {kind}, not a table", path=path)
    if isinstance(node, tomlkit.items.Table) and node.is_super_table():
        # An implied table (only its sub-tables have headers) gets a header of its own once keys are added;
        # tomlkit gives it a copy of the first sub-table's trivia, which would repeat that header's comment.
        node.trivia.comment_ws = ""
        node.trivia.comment = ""
    return node


def _key_indent(table: Any) -> str:
    """The indent to give an added key so it lines up with the table's other keys.

    tomlkit prefixes a key added to an indented table with the table header's indent, so that part is
    left out here.
    """
    if isinstance(table, tomlkit.items.InlineTable):
        return ""
    tables = table._tables if isinstance(table, tomlkit.container.OutOfOrderTableProxy) else [table]
    # the spaces tomlkit takes from the header's indent (the same pattern as its Table.append)
    match = re.match(r"(?s)^[^ ]*([ ]+).*$", str(tables[0].trivia.indent)) if tables else None
    header = match.group(1) if match else ""
    for part in tables:
        for key, item in part.value.body:
            if key is not None and not isinstance(item, (tomlkit.items.Table, tomlkit.items.AoT)):
                return str(item.trivia.indent).removeprefix(header)
    return "  " if header else ""


def _ensure_settings(table: Any, where: str, wanted: dict[str, Any], path: Path) -> list[str]:
    """Set `enable_cdi` (when wanted) and add the missing `cdi_spec_dirs`; return the change lines."""
    changes: list[str] = []
    for key, value in wanted.items():
        current = table.get(key)
        plain = _plain(current)
        if key == "cdi_spec_dirs" and current is not None:
            if not isinstance(plain, list) or not all(isinstance(d, str) for d in plain):
                raise errors.RuntimeConfigLayoutError(
                    f"{str(path)!r}: {where}.{key} is {_toml(plain)}, not a list of directories", path=path
                )
            missing = [d for d in value if d not in plain]
            if missing:
                table[key].extend(missing)  # an Array item: its comments and layout stay
                changes.append(f"{where}.{key}: {_toml(plain)} -> {_toml(plain + missing)}")
            continue
        if current is not None and plain == value and type(plain) is type(value):
            continue
        if current is None:
            item = _spec_dir_array(value) if key == "cdi_spec_dirs" else tomlkit.item(value)
            item.trivia.indent = _key_indent(table)
            table[key] = item
        else:
            table[key] = value  # replacing keeps the old item's indent and trailing comment
        old = "(unset)" if current is None else _toml(plain)
        changes.append(f"{where}.{key}: {old} -> {_toml(value)}")
    return changes


def _with_settings(
    data: dict[str, Any], keys: tuple[str, ...], wanted: dict[str, Any], *, version: int | None
) -> dict[str, Any]:
    """What the edited file must read as: `data` with `version` and the wanted settings, nothing else."""
    expected = copy.deepcopy(data)
    if version is not None:
        expected["version"] = version
    node = expected
    for key in keys:
        node = node.setdefault(key, {})
    for key, value in wanted.items():
        if key == "cdi_spec_dirs" and isinstance(node.get(key), list):
            node[key] = node[key] + [d for d in value if d not in node[key]]
        else:
            node[key] = value
    return expected


# --- writing ----------------------------------------------------------------------------------------


def _write_if_changed(
    path: Path,
    old_text: str,
    doc: tomlkit.TOMLDocument,
    changes: list[str],
    expected: dict[str, Any],
    restart: str,
    notes: list[str],
) -> ApplyResult:
    if not changes:
        _log.info("%s already enables CDI", path)
        return ApplyResult(path=path, changes=(), backup=None, restart_command=restart)
    new_text = tomlkit.dumps(doc)
    try:
        written = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        written = {"unreadable": str(exc)}
    if written != expected:
        raise errors.RuntimeConfigLayoutError(
            f"{str(path)!r}: this layout cannot be edited without changing other settings; add these by hand: "
            + "; ".join(changes),
            path=path,
        )
    files.make_directory(path.parent, mode=_DIR_MODE, error=errors.RuntimeConfigWriteError, what="config directory")
    backup = _backup(path) if old_text.strip() else None
    files.replace_file(path, new_text.encode("utf-8"), error=errors.RuntimeConfigWriteError, what="config")
    _log.info("updated %s (%d change(s), backup %s)", path, len(changes), backup)
    return ApplyResult(path=path, changes=tuple(changes), backup=backup, restart_command=restart, notes=tuple(notes))


def _backup(path: Path) -> Path:
    """Copy `path` to a new `<name>.bak-<UTC time>` with its mode, fsynced before the original is replaced."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(100):
        candidate = path.with_name(f"{path.name}.bak-{stamp}" + (f".{attempt}" if attempt else ""))
        try:
            with candidate.open("xb") as out:
                try:
                    with path.open("rb") as src:
                        shutil.copyfileobj(src, out)
                    shutil.copymode(path, candidate)
                    out.flush()
                    os.fsync(out.fileno())
                except BaseException:
                    with contextlib.suppress(OSError):
                        candidate.unlink()
                    raise
        except FileExistsError:
            continue
        except OSError as exc:
            raise errors.RuntimeConfigWriteError(
                f"cannot back up {str(path)!r} to {str(candidate)!r}: {exc.strerror or exc}", path=path
            ) from exc
        return candidate
    raise errors.RuntimeConfigWriteError(f"cannot find a free backup name for {str(path)!r}", path=path)
