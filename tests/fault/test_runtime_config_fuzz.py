"""Fuzz `runtime-config containerd --apply` over the config shapes found on real nodes (tests/config_shapes.py).

Properties: apply never raises; the result reads (tomllib) as exactly the old settings plus the CDI ones;
every comment survives once and in order; a second apply changes nothing.

CDI_FUSE_FUZZ_EXAMPLES raises the example count for a longer campaign.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings

from cdi_fuse.runtime import config
from tests.config_shapes import CRI_TABLES, comment_tags, containerd_configs

EXAMPLES = int(os.environ.get("CDI_FUSE_FUZZ_EXAMPLES", "200"))
SPEC_DIRS = ["/etc/cdi", "/var/run/cdi"]


def _expected(before: dict[str, Any], version: int) -> dict[str, Any]:
    plugins = before.setdefault("plugins", {})
    cri = plugins.setdefault(CRI_TABLES[version], {})
    cri["enable_cdi"] = True
    dirs = cri.get("cdi_spec_dirs", [])
    cri["cdi_spec_dirs"] = dirs + [d for d in SPEC_DIRS if d not in dirs]
    return before


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated=containerd_configs())
@example(generated=("version = 3\n[plugins.'io.containerd.cri.v1.runtime']\n  restrict_oom_score_adj = true\n", 3))
@example(generated=('version = 2\n[plugins]\n  [plugins."io.containerd.grpc.v1.cri"]\n    x = 1\n', 2))
def test_apply_never_raises_keeps_every_key_and_comment_and_is_idempotent(generated: tuple[str, int]) -> None:
    text, version = generated
    before = tomllib.loads(text)  # the generator only writes valid TOML
    with tempfile.TemporaryDirectory(prefix="cdifuzz-") as work:
        path = Path(work) / "config.toml"
        path.write_bytes(text.encode())

        first = config.apply_containerd_config(path)
        after = path.read_bytes().decode()
        second = config.apply_containerd_config(path)

        event("file changed" if first.changed else "file already fit")
        assert tomllib.loads(after) == _expected(before, version)
        assert comment_tags(after) == comment_tags(text), "a comment was lost, duplicated or moved"
        assert first.changed == (after != text)
        assert not second.changed, second.changes
        assert path.read_bytes().decode() == after
