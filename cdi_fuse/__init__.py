"""cdi-fuse: /dev/fuse for unprivileged Kubernetes pods through CDI and a kubelet device plugin."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cdi-fuse")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
