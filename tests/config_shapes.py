"""Hypothesis strategy for containerd config files shaped the way real nodes have them.

A generated config mixes what admins and tools write: version 2 or 3, the CRI table as a header (alone,
under an indented `[plugins]`, split around other tables, or only implied by its sub-tables), as dotted
keys at the top or under `[plugins]`, as an inline table, or missing; keys indented with spaces or tabs;
`enable_cdi` true, false or absent; `cdi_spec_dirs` absent, one-line or multi-line with comments; quoting
styles; LF or CRLF; whole-line and trailing comments everywhere TOML allows them, each tagged `# c<N>` so
a test can find every one again (`comment_tags`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import event
from hypothesis import strategies as st

__all__ = ["CRASHED", "CRI_TABLES", "DATA", "comment_tags", "containerd_configs"]

DATA = Path(__file__).resolve().parent / "data" / "runtime-config"

CRI_TABLES = {2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
COMMENT_TAG = re.compile(r"#\s*c\d+")


@dataclass
class _Doc:
    """A config text under construction; comments are numbered so each can be found again."""

    draw: st.DrawFn
    lines: list[str] = field(default_factory=list)
    comments: int = 0

    def comment(self) -> str:
        self.comments += 1
        return f"# c{self.comments}"

    def trailing(self) -> str:
        return f"  {self.comment()}" if self.draw(st.booleans()) else ""

    def maybe_comment_lines(self, indent: str) -> None:
        for _ in range(self.draw(st.integers(0, 2))):
            self.lines.append(f"{indent}{self.comment()}")
        if self.draw(st.booleans()):
            self.lines.append("")

    def key_values(self, indent: str, pairs: list[tuple[str, str]]) -> None:
        for key, value in pairs:
            self.maybe_comment_lines(indent)
            self.lines.append(f"{indent}{key} = {value}{self.trailing()}")


def _quoted(draw: st.DrawFn, name: str) -> str:
    return draw(st.sampled_from([f'"{name}"', f"'{name}'"]))


def _string(draw: st.DrawFn, value: str) -> str:
    return draw(st.sampled_from([f'"{value}"', f"'{value}'"]))


def _spec_dirs_value(doc: _Doc, indent: str) -> str:
    dirs = doc.draw(st.lists(st.sampled_from(["/etc/cdi", "/var/run/cdi", "/opt/vendor/cdi"]), unique=True))
    items = [_string(doc.draw, d) for d in dirs]
    if not items or doc.draw(st.booleans()):
        return "[" + ", ".join(items) + "]"
    inner = indent + doc.draw(st.sampled_from(["  ", "    ", "\t"]))
    body = "".join(f"\n{inner}{item},{doc.trailing()}" for item in items)
    return f"[{doc.trailing()}{body}\n{indent}]"


def _cri_pairs(doc: _Doc, indent: str, *, multiline_ok: bool) -> list[tuple[str, str]]:
    """Keys of the CRI table, in a random order; enable_cdi/cdi_spec_dirs may be missing."""
    pairs = [
        ("sandbox_image", _string(doc.draw, "registry.k8s.io/pause:3.10")),
        ("restrict_oom_score_adj", doc.draw(st.sampled_from(["true", "false"]))),
        ("enable_selinux", "false"),
        ("enable_cdi", doc.draw(st.sampled_from(["true", "false"]))),
        ("cdi_spec_dirs", _spec_dirs_value(doc, indent) if multiline_ok else '["/etc/cdi"]'),
    ]
    chosen = doc.draw(st.lists(st.sampled_from(range(len(pairs))), unique=True))
    return [pairs[i] for i in chosen]


def _other_table(doc: _Doc, name: str, indent: str) -> None:
    doc.maybe_comment_lines(indent)
    doc.lines.append(f"{indent}[{name}]{doc.trailing()}")
    doc.key_values(indent + doc.draw(st.sampled_from(["", "  "])), [("path", _string(doc.draw, "/opt/containerd"))])


@st.composite
def containerd_configs(draw: st.DrawFn) -> tuple[str, int]:
    doc = _Doc(draw)
    version = draw(st.sampled_from([2, 3]))
    table = CRI_TABLES[version]
    cri = _quoted(draw, table)
    unit = draw(st.sampled_from(["", "  ", "    ", "\t"]))
    style = draw(
        st.sampled_from(
            ["header", "nested", "split", "implicit", "dotted-top", "dotted-plugins", "inline", "inline-top", "absent"]
        )
    )

    doc.maybe_comment_lines("")
    top = [("version", str(version)), ("root", _string(draw, "/var/lib/containerd"))]
    if draw(st.booleans()):
        top.reverse()  # `version` need not come first
    doc.key_values("", top)
    if style == "dotted-top":
        doc.key_values("", [(f"plugins.{cri}.{k}", v) for k, v in _cri_pairs(doc, "", multiline_ok=False)])
    if style == "inline-top":
        inner = ", ".join(f"{k} = {v}" for k, v in _cri_pairs(doc, "", multiline_ok=False))
        doc.key_values("", [("plugins", f"{{ {cri} = {{ {inner} }} }}")])
    if draw(st.booleans()):
        doc.maybe_comment_lines("")
        doc.lines.append(f"[grpc]{doc.trailing()}")
        doc.key_values(unit, [("address", _string(draw, "/run/containerd/containerd.sock"))])

    sub = f"[plugins.{cri}.containerd]"
    if style in ("header", "split"):
        doc.maybe_comment_lines("")
        doc.lines.append(f"[plugins.{cri}]{doc.trailing()}")
        doc.key_values(unit, _cri_pairs(doc, unit, multiline_ok=True))
        if style == "split":
            _other_table(doc, "metrics", "")  # another table between the CRI table and its sub-table
        if style == "split" or draw(st.booleans()):
            doc.lines.append(f"{unit}{sub}{doc.trailing()}")
            doc.key_values(unit * 2, [("snapshotter", _string(draw, "overlayfs"))])
    elif style == "nested":
        doc.lines.append(f"[plugins]{doc.trailing()}")
        step = draw(st.sampled_from(["  ", "    "]))
        if draw(st.booleans()):
            _other_table(doc, 'plugins."io.containerd.internal.v1.opt"', step)
        doc.maybe_comment_lines(step)
        doc.lines.append(f"{step}[plugins.{cri}]{doc.trailing()}")
        doc.key_values(step * 2, _cri_pairs(doc, step * 2, multiline_ok=True))
        if draw(st.booleans()):
            doc.lines.append(f"{step * 2}{sub}")
            doc.key_values(step * 3, [("snapshotter", _string(draw, "native"))])
    elif style == "implicit":
        doc.lines.append(f"{sub}{doc.trailing()}")
        doc.key_values(unit, [("snapshotter", _string(draw, "overlayfs"))])
    elif style == "dotted-plugins":
        doc.lines.append(f"[plugins]{doc.trailing()}")
        doc.key_values(unit, [(f"{cri}.{k}", v) for k, v in _cri_pairs(doc, unit, multiline_ok=False)])
    elif style == "inline":
        doc.lines.append(f"[plugins]{doc.trailing()}")
        inner = ", ".join(f"{k} = {v}" for k, v in _cri_pairs(doc, unit, multiline_ok=False))
        doc.key_values(unit, [(cri, f"{{ {inner} }}" if inner else "{}")])
    elif style == "absent" and draw(st.booleans()):
        _other_table(doc, 'plugins."io.containerd.internal.v1.opt"', "")
    doc.maybe_comment_lines("")
    event(f"version {version}, CRI table as {style}")
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(doc.lines) + (newline if draw(st.booleans()) else "")
    return text, version


def comment_tags(text: str) -> list[str]:
    """The `# c<N>` tags of a generated config's comments, in order."""
    return [m.group(0).replace(" ", "") for m in COMMENT_TAG.finditer(text)]


# The shapes of issue 11 that crashed with "AttributeError: 'bool' object has no attribute 'trivia'": a CRI
# table with indented keys and no enable_cdi.
CRASHED = {
    "v3-indented": f"version = 3\n[plugins.'{CRI_TABLES[3]}']\n  restrict_oom_score_adj = true\n",
    "v3-under-plugins": (
        f"version = 3\n[plugins]\n  [plugins.'{CRI_TABLES[3]}']\n    restrict_oom_score_adj = true\n"
        f"    [plugins.'{CRI_TABLES[3]}'.containerd]\n      default_runtime_name = 'runc'\n"
    ),
    "v2-indented": (
        f'version = 2\n[plugins."{CRI_TABLES[2]}"]\n    sandbox_image = "pause:3.9"\n    enable_selinux = false\n'
    ),
}
