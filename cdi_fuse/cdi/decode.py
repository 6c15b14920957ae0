"""Read spec bytes the way the runtimes' CDI library does.

The reference library (pkg/cdi ``ParseSpec``) calls ``sigs.k8s.io/yaml.UnmarshalStrict``: go-yaml v2 reads the
bytes (JSON too, as YAML) with YAML 1.1 scalar rules and strict duplicate keys, the result is converted to JSON
(non-string scalars become strings where the Go field is a string), and ``encoding/json`` decodes that into the
spec types with unknown fields refused and field names matched case-insensitively. This module follows those
steps so that ``validate`` judges what the runtime will actually see. Its agreement with the library is measured
by tests/conformance (a Go oracle built from Debian's packaged library); the documented differences are listed
there.

``decode_spec`` returns the spec as the Go types hold it (zero values filled in, ``None`` for a nil pointer inside a
list, which the library dereferences), the plain JSON the YAML converts to (what a JSON-schema check sees), and the
plain scalars whose meaning differs between YAML 1.1 (the runtimes) and YAML 1.2.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from cdi_fuse.cdi import compat, yaml11

__all__ = [
    "DecodeError",
    "Decoded",
    "GoType",
    "YamlAmbiguity",
    "decode_spec",
    "go_json",
    "library_spec_type",
    "spec_type",
    "version_refusal",
]

_PLAIN = "?plain"
_MAX_ALIAS_EXPANSION = 100_000


class DecodeError(Exception):
    """The library's YAML/JSON step refuses the bytes; `location` names the field when one is known."""

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location


@dataclass(frozen=True)
class YamlAmbiguity:
    location: str
    text: str
    yaml11: object  # what the runtime reads (after the conversion to the field's type)
    yaml12: object  # what a YAML 1.2 reader would give


@dataclass
class Decoded:
    spec: dict[str, Any] | None = None  # the Go struct as data; None when decoding failed
    error: DecodeError | None = None
    plain: object = None  # the document as JSON without the field-type conversion (what a schema check sees)
    plain_ok: bool = False
    ambiguities: list[YamlAmbiguity] = field(default_factory=list)


# --- Go types of the spec (specs-go/config.go) --------------------------------------------------------------------


@dataclass(frozen=True)
class GoType:
    kind: str  # string, int64, uint32, bool, slice, ptr, map, struct
    elem: GoType | None = None
    fields: tuple[tuple[str, GoType], ...] = ()
    name: str = ""

    def field(self, key: str) -> tuple[str, GoType] | None:
        """The struct field a JSON key decodes into: exact name first, else a case-insensitive match."""
        folded = None
        for name, kind in self.fields:
            if name == key:
                return name, kind
            if folded is None and _fold(name) == _fold(key):
                folded = (name, kind)
        return folded


def _fold(text: str) -> str:
    # encoding/json matches names with Unicode simple case folding: for ASCII names only these two non-ASCII
    # letters fold onto ASCII ones (KELVIN SIGN -> k, LATIN SMALL LETTER LONG S -> s).
    return text.replace("\u212a", "k").replace("\u017f", "s").lower() if text.isascii() is False else text.lower()


STRING = GoType("string")
INT64 = GoType("int64")
UINT32 = GoType("uint32")
BOOL = GoType("bool")


def _slice(elem: GoType) -> GoType:
    return GoType("slice", elem)


def _ptr(elem: GoType) -> GoType:
    return GoType("ptr", elem)


def _struct(name: str, *fields: tuple[str, GoType]) -> GoType:
    return GoType("struct", fields=fields, name=name)


STRINGS = _slice(STRING)
STRING_MAP = GoType("map", STRING)


def spec_type(
    *, intel_rdt_fields: tuple[str, ...], net_devices: bool, additional_gids: bool, annotations: bool
) -> GoType:
    """specs-go's Spec type for one library version (fields differ between versions)."""
    node = _struct(
        "DeviceNode",
        ("path", STRING),
        ("hostPath", STRING),
        ("type", STRING),
        ("major", INT64),
        ("minor", INT64),
        ("fileMode", _ptr(UINT32)),
        ("permissions", STRING),
        ("uid", _ptr(UINT32)),
        ("gid", _ptr(UINT32)),
    )
    mount = _struct("Mount", ("hostPath", STRING), ("containerPath", STRING), ("options", STRINGS), ("type", STRING))
    hook = _struct(
        "Hook", ("hookName", STRING), ("path", STRING), ("args", STRINGS), ("env", STRINGS), ("timeout", _ptr(INT64))
    )
    rdt_types = {"schemata": STRINGS, "enableMonitoring": BOOL, "enableCMT": BOOL, "enableMBM": BOOL}
    rdt = _struct("IntelRdt", *((name, rdt_types.get(name, STRING)) for name in intel_rdt_fields))
    net = _struct("LinuxNetDevice", ("hostInterfaceName", STRING), ("name", STRING))
    edits_fields: list[tuple[str, GoType]] = [
        ("env", STRINGS),
        ("deviceNodes", _slice(_ptr(node))),
        ("hooks", _slice(_ptr(hook))),
        ("mounts", _slice(_ptr(mount))),
    ]
    if intel_rdt_fields:
        edits_fields.append(("intelRdt", _ptr(rdt)))
    if additional_gids:
        edits_fields.append(("additionalGids", _slice(UINT32)))
    if net_devices:
        edits_fields.append(("netDevices", _slice(_ptr(net))))
    edits = _struct("ContainerEdits", *edits_fields)
    annotation_field = (("annotations", STRING_MAP),) if annotations else ()
    device = _struct("Device", ("name", STRING), *annotation_field, ("containerEdits", edits))
    return _struct(
        "Spec",
        ("cdiVersion", STRING),
        ("kind", STRING),
        *annotation_field,
        ("devices", _slice(device)),
        ("containerEdits", edits),
    )


def _zero(kind: GoType) -> object:
    if kind.kind == "struct":
        return {name: _zero(sub) for name, sub in kind.fields if sub.kind in ("string", "int64", "bool", "struct")}
    return {"string": "", "int64": 0, "uint32": 0, "bool": False}.get(kind.kind)


# --- go-yaml v2: parse and resolve ---------------------------------------------------------------------------------


class _Resolver(yaml.resolver.BaseResolver):
    """Leaves plain scalars unresolved (go-yaml v2 resolves them itself, below)."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, _Resolver):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)


# go-yaml v2's plain-scalar rules live in yaml11 (the spec writer needs them without this module).
_INT64 = yaml11.INT64
_Uint64 = yaml11.Uint64
_go_parse_int = yaml11.go_parse_int
resolve_yaml11 = yaml11.resolve_yaml11


_INT12_RE = re.compile(r"^[-+]?[0-9]+$")
_FLOAT12_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def resolve_yaml12(text: str) -> object:
    """The YAML 1.2 core schema's value for a plain scalar."""
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT12_RE.match(text):
        return int(text)
    if re.match(r"^0o[0-7]+$", text):
        return int(text[2:], 8)
    if re.match(r"^0x[0-9a-fA-F]+$", text):
        return int(text[2:], 16)
    if _FLOAT12_RE.match(text):
        return float(text)
    if re.match(r"^[-+]?\.(inf|Inf|INF)$", text):
        return -math.inf if text.startswith("-") else math.inf
    if text in (".nan", ".NaN", ".NAN"):
        return math.nan
    return text


@dataclass
class _Scalar:
    """A plain scalar keeps its text so the field-type conversion can tell YAML 1.1 from 1.2 readings."""

    value: object
    text: str | None  # None: quoted or tagged (no YAML-version ambiguity)


class _Map(dict["_KeyBox", object]):
    pass


def _check_text(text: str) -> None:
    for char in text:
        if "\ud800" <= char <= "\udfff":
            raise DecodeError("yaml: found invalid Unicode character escape code")


def _scalar(node: yaml.ScalarNode) -> _Scalar:
    _check_text(node.value)
    if node.tag == _PLAIN:
        return _Scalar(resolve_yaml11(node.value), node.value)
    tag = node.tag
    if tag == "tag:yaml.org,2002:binary":
        try:
            return _Scalar(
                base64.b64decode(node.value.replace("\n", ""), validate=True).decode("utf-8", "replace"), None
            )
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"yaml: !!binary value contains invalid base64 data: {exc}") from exc
    expect = {
        "tag:yaml.org,2002:int": int,
        "tag:yaml.org,2002:float": float,
        "tag:yaml.org,2002:bool": bool,
        "tag:yaml.org,2002:null": type(None),
    }.get(tag)
    if expect is None:
        return _Scalar(node.value, None)  # !!str, quoted, or an unknown tag: the text
    value = resolve_yaml11(node.value)
    if expect is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expect) or (expect is int and isinstance(value, bool)):
        raise DecodeError(f"yaml: cannot decode {node.value!r} as a {tag.rsplit(':', 1)[-1]}")
    return _Scalar(value, None)


class _Builder:
    """Turns composed nodes into Go values the way go-yaml v2 (strict) decodes into interface{}."""

    def __init__(self) -> None:
        self.count = 0

    def build(self, node: yaml.Node) -> object:
        self.count += 1
        if self.count > _MAX_ALIAS_EXPANSION:
            raise DecodeError("yaml: document contains excessive aliasing")
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child) for child in node.value]
        if isinstance(node, yaml.MappingNode):
            out = _Map()
            self._fill(node, out)
            return out
        raise DecodeError(f"yaml: unexpected node {node!r}")

    def _fill(self, node: yaml.MappingNode, out: _Map) -> None:
        for key_node, value_node in node.value:
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.value == "<<"
                and key_node.tag
                in (
                    _PLAIN,
                    "tag:yaml.org,2002:merge",
                )
            ):
                self._merge(value_node, out)
                continue
            key = self.build(key_node)
            if not isinstance(key, _Scalar):
                raise DecodeError(f"yaml: invalid map key at line {key_node.start_mark.line + 1}")
            box = _KeyBox(key.value if not (isinstance(key.value, float) and math.isnan(key.value)) else key_node)
            if box in out:
                line = value_node.start_mark.line + 1
                raise DecodeError(f"yaml: line {line}: key {key.value!r} already set in map")
            out[box] = self.build(value_node)

    def _merge(self, node: yaml.Node, out: _Map) -> None:
        if isinstance(node, yaml.MappingNode):
            self._fill(node, out)
        elif isinstance(node, yaml.SequenceNode):
            for child in reversed(node.value):
                if not isinstance(child, yaml.MappingNode):
                    raise DecodeError("yaml: map merge requires map or sequence of maps as the value")
                self._fill(child, out)
        else:
            raise DecodeError("yaml: map merge requires map or sequence of maps as the value")


class _KeyBox:
    """A Go map key: typed, so 1, "1" and true stay different keys (Python would merge 1 and True)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def _key(self) -> tuple[str, object]:
        return (type(self.value).__name__, self.value)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _KeyBox) and self._key() == other._key()


# --- sigs.k8s.io/yaml: YAML value -> JSON -> Go struct -------------------------------------------------------------


def _format_float32_g(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 32): the shortest digits that survive float32, in Go's %g layout."""
    if math.isnan(value):
        return "NaN"
    try:
        single = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        single = math.copysign(math.inf, value)
    if math.isinf(single):
        return "+Inf" if single > 0 else "-Inf"
    if single == 0:
        return "-0" if math.copysign(1, single) < 0 else "0"
    text = f"{single:.8e}"
    for precision in range(1, 10):
        candidate = f"{single:.{precision - 1}e}"
        if struct.unpack("f", struct.pack("f", float(candidate)))[0] == single:
            text = candidate
            break
    mantissa, exponent_text = text.split("e")
    digits = mantissa.replace(".", "").lstrip("-").rstrip("0") or "0"
    exponent = int(exponent_text)
    if exponent < -4 or exponent >= 6:  # Go uses precision 6 for this choice when printing the shortest digits
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        out = f"{body}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    elif exponent >= 0:
        integer = digits[: exponent + 1].ljust(exponent + 1, "0")
        fraction = digits[exponent + 1 :]
        out = integer + ("." + fraction if fraction else "")
    else:
        out = "0." + "0" * (-exponent - 1) + digits
    return ("-" if single < 0 else "") + out


def _json_integer_literal(value: int | float) -> int | None:
    """The integer a number's encoding/json literal holds, None when the literal has a fraction or exponent."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value != int(value) or abs(value) >= 1e21:
            return None
        if value != 0 and abs(value) < 1e-6:
            return None
        return int(value)
    return value


def _to_string(value: object) -> object:
    """sigs.k8s.io/yaml's conversion of a non-string scalar for a string field."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float32_g(value)
    return value


class _Decoder:
    def __init__(self) -> None:
        self.ambiguities: list[YamlAmbiguity] = []

    def plain(self, value: object) -> object:
        """The JSON the document converts to without a target type (what `YAMLToJSON` gives)."""
        if isinstance(value, _Scalar):
            scalar = value.value
            if isinstance(scalar, float) and (math.isnan(scalar) or math.isinf(scalar)):
                raise DecodeError(f"json: unsupported value: {_format_float32_g(scalar)}")
            return scalar
        if isinstance(value, list):
            return [self.plain(item) for item in value]
        if isinstance(value, _Map):
            return {self.key(k.value): self.plain(v) for k, v in value.items()}
        return value

    @staticmethod
    def key(key: object) -> str:
        if isinstance(key, str):
            return key
        if isinstance(key, bool):
            return "true" if key else "false"
        if isinstance(key, int):
            return str(key)
        if isinstance(key, float):
            text = _format_float32_g(key)
            return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(text, text)
        raise DecodeError(f"error converting YAML to JSON: unsupported map key: {key!r}")

    def decode(self, value: object, kind: GoType, where: str, current: object = None) -> object:
        if isinstance(value, _Scalar):
            return self._scalar(value, kind, where, current)
        if isinstance(value, list):
            if kind.kind == "ptr":
                assert kind.elem is not None
                return self.decode(value, kind.elem, where, current)
            if kind.kind != "slice":
                raise DecodeError(
                    f"json: cannot unmarshal array into field {where or 'the spec'} of type {_type_name(kind)}", where
                )
            assert kind.elem is not None
            return [self.decode(item, kind.elem, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, _Map):
            return self._object(value, kind, where, current)
        raise DecodeError(f"unexpected value {value!r}", where)

    def _object(self, value: _Map, kind: GoType, where: str, current: object) -> object:
        if kind.kind == "ptr":
            assert kind.elem is not None
            return self._object(value, kind.elem, where, current)
        entries: dict[str, object] = {}
        for boxed, item in value.items():
            entries[self.key(boxed.value)] = item
        if kind.kind == "map":
            out: dict[str, object] = dict(current) if isinstance(current, dict) else {}
            for key in sorted(entries, key=lambda k: k.encode("utf-8", "surrogatepass")):
                assert kind.elem is not None
                decoded = self.decode(entries[key], kind.elem, _join(where, key))
                out[key] = decoded if decoded is not None else ""
            return out
        if kind.kind != "struct":
            raise DecodeError(
                f"json: cannot unmarshal object into field {where or 'the spec'} of type {_type_name(kind)}", where
            )
        struct_out: dict[str, object] = dict(current) if isinstance(current, dict) else _zero(kind)  # type: ignore[assignment]
        for key in sorted(entries, key=lambda k: k.encode("utf-8", "surrogatepass")):
            found = kind.field(key)
            if found is None:
                raise DecodeError(f'json: unknown field "{key}"', _join(where, key))
            name, sub = found
            decoded = self.decode(entries[key], sub, _join(where, name), struct_out.get(name))
            if decoded is _KEEP:
                continue
            struct_out[name] = decoded
        return struct_out

    def _scalar(self, scalar: _Scalar, kind: GoType, where: str, current: object) -> object:
        value = scalar.value
        if kind.kind == "string" and value is not None and not isinstance(value, (str, list, _Map)):
            value = _to_string(value)
        if scalar.text is not None:
            self._check_ambiguity(scalar.text, value, kind, where)
        if value is None:
            if kind.kind in ("ptr", "slice", "map"):
                return None
            return _KEEP if current is not None else _zero(kind)
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            raise DecodeError(
                f"error converting YAML to JSON: json: unsupported value: {_format_float32_g(value)}", where
            )
        if kind.kind == "ptr":
            assert kind.elem is not None
            return self._scalar(_Scalar(value, None), kind.elem, where, None)
        if kind.kind == "string":
            if isinstance(value, str):
                return value
        elif kind.kind == "bool":
            if isinstance(value, bool):
                return value
        elif kind.kind in ("int64", "uint32") and isinstance(value, (int, float)) and not isinstance(value, bool):
            number = _json_integer_literal(value)
            negative_zero = isinstance(value, float) and value == 0 and math.copysign(1, value) < 0
            low, high = _INT64 if kind.kind == "int64" else (0, 2**32 - 1)
            if number is not None and low <= number <= high and not (kind.kind == "uint32" and negative_zero):
                return number
            raise DecodeError(
                f"json: cannot unmarshal number {value!r} into field {where} of type {_type_name(kind)}", where
            )
        got = "string" if isinstance(value, str) else "bool" if isinstance(value, bool) else "number"
        raise DecodeError(
            f"json: cannot unmarshal {got} into field {where or 'the spec'} of type {_type_name(kind)}", where
        )

    def _check_ambiguity(self, text: str, yaml11: object, kind: GoType, where: str) -> None:
        yaml12 = resolve_yaml12(text)
        if kind.kind == "string" and yaml12 is not None:
            yaml12 = _to_string(yaml12) if not isinstance(yaml12, str) else yaml12
            if isinstance(yaml12, float):
                yaml12 = _format_float32_g(yaml12)
        same = yaml11 == yaml12 and type(yaml11) is type(yaml12)
        if isinstance(yaml11, float) and isinstance(yaml12, float) and math.isnan(yaml11) and math.isnan(yaml12):
            same = True
        if not same:
            self.ambiguities.append(YamlAmbiguity(where, text, yaml11, yaml12))


_KEEP: Any = object()


def _type_name(kind: GoType) -> str:
    if kind.kind in ("slice", "ptr", "map"):
        assert kind.elem is not None
        prefix = {"slice": "[]", "ptr": "*", "map": "map[string]"}[kind.kind]
        return prefix + _type_name(kind.elem)
    return kind.name or kind.kind


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _first_document(text: str) -> yaml.Node | None:
    """go-yaml v2 reads the first document only, and only YAML 1.1 (a `%YAML 1.2` directive is refused)."""
    loader = _Loader(text)
    try:
        if not loader.check_node():
            return None
        if getattr(loader, "yaml_version", None) not in (None, (1, 1)):
            raise DecodeError("yaml: found incompatible YAML document")
        node: yaml.Node | None = loader.get_node()
        return node
    finally:
        loader.dispose()


def decode_spec(data: bytes, spec_kind: GoType) -> Decoded:
    """Decode spec file bytes into `spec_kind` as ``sigs.k8s.io/yaml.UnmarshalStrict`` does."""
    result = Decoded()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        result.error = DecodeError(f"yaml: invalid UTF-8 at byte {exc.start}")
        return result
    try:
        node = _first_document(text)
        value = _Builder().build(node) if node is not None else _Scalar(None, None)
    except DecodeError as exc:
        result.error = exc
        return result
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        result.error = DecodeError(f"yaml: {where}{problem}")
        return result
    except RecursionError:
        result.error = DecodeError("yaml: nested too deeply")
        return result
    decoder = _Decoder()
    try:
        result.plain = decoder.plain(value)
        result.plain_ok = True
    except DecodeError:
        result.plain_ok = False
    try:
        if isinstance(value, _Scalar) and value.value is None:
            raise DecodeError("no spec data: the document is empty or null")
        if not isinstance(value, _Map):
            raise DecodeError("not a CDI spec: the top level must be a mapping with cdiVersion, kind, devices")
        spec = decoder.decode(value, spec_kind, "")
    except DecodeError as exc:
        result.error = exc
        result.ambiguities = decoder.ambiguities
        return result
    except RecursionError:
        result.error = DecodeError("nested too deeply")
        return result
    assert isinstance(spec, dict)
    result.spec = spec
    result.ambiguities = decoder.ambiguities
    return result


def go_json(value: object, kind: GoType) -> object:
    """The Go value as ``encoding/json`` marshals it (``omitempty`` fields dropped): for comparing with the oracle."""
    omit_empty = {
        "annotations", "containerEdits", "env", "deviceNodes", "hooks", "mounts", "intelRdt", "additionalGids",
        "netDevices", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid", "options",
        "args", "timeout", "closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring", "enableCMT",
        "enableMBM",
    }  # fmt: skip
    required_here = {("Mount", "hostPath"), ("Device", "containerEdits"), ("Spec", "containerEdits")}
    if kind.kind == "ptr":
        assert kind.elem is not None
        return None if value is None else go_json(value, kind.elem)
    if kind.kind == "slice":
        assert kind.elem is not None
        return None if value is None else [go_json(item, kind.elem) for item in value]  # type: ignore[attr-defined]
    if kind.kind == "struct":
        assert isinstance(value, Mapping)
        out: dict[str, object] = {}
        for name, sub in kind.fields:
            item = value.get(name, _zero(sub))
            empty = (
                item is None
                if sub.kind == "ptr"
                else (item in (None, "", 0, False) and not isinstance(item, dict))
                or (isinstance(item, (list, dict)) and not item and sub.kind != "struct")
            )
            if name in omit_empty and (kind.name, name) not in required_here and sub.kind != "struct" and empty:
                continue
            out[name] = go_json(item, sub)
        return out
    return value


def library_spec_type(library: compat.Library) -> GoType:
    """The Go spec type `library` decodes into (its fields)."""
    return spec_type(
        intel_rdt_fields=library.intel_rdt_fields,
        net_devices=library.net_devices,
        additional_gids=library.additional_gids,
        annotations=library.annotations,
    )


def version_refusal(data: bytes, library: compat.Library) -> str | None:
    """Why `library` refuses spec bytes at its first two steps: reading them into its types (a field it does not
    have, e.g. netDevices before 1.1) and knowing the declared cdiVersion; None when both pass. The later rules
    (names, edits, minimum version) are the same for every library line: report.judge_bytes checks them, with
    pydantic; this needs only YAML, for the plugin process."""
    decoded = decode_spec(data, library_spec_type(library))
    if decoded.error is not None:
        return decoded.error.message
    assert decoded.spec is not None
    declared = str(decoded.spec.get("cdiVersion", ""))
    if not compat.loads_version(library, declared):
        newest = library.max_cdi_version
        return f"invalid version {declared!r}: CDI library {library.version} knows versions up to {newest}"
    return None
