"""The upstream contracts the conformance tests use as oracles: ../shared/reference, next to the checkout.

That folder belongs to this project's workspace, not to the repository: a fresh clone elsewhere does not
have it. Tests ask for a file with :func:`reference_file` (in a fixture or test) or
:func:`reference_file_or_skip_module` (at module level); when the file is missing they skip, printing
which file and why, unless ``CDI_FUSE_REQUIRE_REFERENCE=1`` (set by .ci/run) turns the skip into a failure.
``CDI_FUSE_REFERENCE_DIR`` points the tests at another copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_ENV = "CDI_FUSE_REQUIRE_REFERENCE"
DIR_ENV = "CDI_FUSE_REFERENCE_DIR"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"


def reference_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def _missing(message: str, *, module_level: bool) -> NoReturn:
    print(message)
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} (and {REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)


def _find(relative: str, *, module_level: bool) -> Path:
    path = reference_dir() / relative
    if not path.is_file():
        _missing(
            f"upstream reference {relative!r} not found at {path} (set {DIR_ENV} to a copy of the reference data)",
            module_level=module_level,
        )
    return path


def reference_file(relative: str) -> Path:
    """The reference file at `relative` (e.g. "cri/runtime_v1_api.proto"); skips the calling test when absent."""
    return _find(relative, module_level=False)


def reference_file_or_skip_module(relative: str) -> Path:
    """Like :func:`reference_file`, for module level: skips every test of the module when absent."""
    return _find(relative, module_level=True)
