"""The node's container runtime, asked over CRI: which runtime, which version, does it resolve CDI names."""

from cdi_fuse.runtime.cri import (
    DEFAULT_CDI_SPEC_DIRS,
    DEFAULT_ENDPOINTS,
    RuntimeInfo,
    RuntimeProbe,
    probe_runtime,
    query_runtime,
)

__all__ = [
    "DEFAULT_CDI_SPEC_DIRS",
    "DEFAULT_ENDPOINTS",
    "RuntimeInfo",
    "RuntimeProbe",
    "probe_runtime",
    "query_runtime",
]
