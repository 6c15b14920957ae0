"""Exceptions owned by cdi-fuse. This module imports nothing of ours."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ApiServerError",
    "CdiFuseError",
    "ClaimError",
    "DeviceProbeError",
    "InvalidNameError",
    "InvalidOptionError",
    "RegistrationError",
    "RuntimeConfigError",
    "RuntimeConfigLayoutError",
    "RuntimeConfigReadError",
    "RuntimeConfigSyntaxError",
    "RuntimeConfigValueError",
    "RuntimeConfigVersionError",
    "RuntimeConfigWriteError",
    "RuntimeQueryError",
    "SpecError",
    "SpecVersionError",
    "SpecWriteError",
    "UnexpectedDeviceError",
]


class CdiFuseError(Exception):
    """Base of every error cdi-fuse raises on purpose."""


class SpecError(CdiFuseError):
    """A CDI spec (or part of one) is invalid. `path` names the file when there is one."""

    def __init__(self, message: str, *, path: Path | None = None, location: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.location = location

    def __str__(self) -> str:
        where = ": ".join(p for p in (str(self.path) if self.path else "", self.location) if p)
        return f"{where}: {self.message}" if where else self.message


class InvalidNameError(SpecError):
    """A vendor, class, device or qualified device name breaks the CDI name grammar."""


class SpecVersionError(SpecError):
    """A spec declares an unknown cdiVersion or one lower than its content needs."""


class SpecWriteError(CdiFuseError):
    """A spec could not be written; the file that was there before is left intact."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class DeviceProbeError(CdiFuseError):
    """The FUSE device or kernel support is missing or not what it should be."""

    def __init__(self, message: str, *, device: Path, hint: str = "") -> None:
        super().__init__(message)
        self.device = device
        self.hint = hint


class UnexpectedDeviceError(DeviceProbeError):
    """The device is a character device, but not the FUSE misc device (10:229); `found` is its major:minor."""

    def __init__(self, message: str, *, device: Path, found: tuple[int, int], hint: str = "") -> None:
        super().__init__(message, device=device, hint=hint)
        self.found = found


class RuntimeQueryError(CdiFuseError):
    """The container runtime could not be asked over CRI, or answered something unusable."""

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class RuntimeConfigError(CdiFuseError):
    """A container runtime's config file cannot be read, understood or changed as asked; `path` names it."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class RuntimeConfigReadError(RuntimeConfigError):
    """The config file exists but cannot be read, or is not UTF-8 text."""


class RuntimeConfigSyntaxError(RuntimeConfigError):
    """The config file is not valid TOML."""


class RuntimeConfigVersionError(RuntimeConfigError):
    """The config declares no usable version (1, unknown, not an integer), or not the version asked for."""


class RuntimeConfigLayoutError(RuntimeConfigError):
    """A key the CDI settings belong under holds something else (e.g. a string where a table belongs), or the
    edit would change more than the CDI settings."""


class RuntimeConfigValueError(RuntimeConfigError):
    """The settings asked for are invalid (e.g. a relative spec directory)."""


class RuntimeConfigWriteError(RuntimeConfigError):
    """The config or its backup could not be written; the file that was there is left intact."""


class RegistrationError(CdiFuseError):
    """The device plugin could not serve its socket or register with the kubelet."""

    def __init__(self, message: str, *, socket: Path | None = None) -> None:
        super().__init__(message)
        self.socket = socket


class ApiServerError(CdiFuseError):
    """The Kubernetes API server refused a request or could not be reached (`status` None: no answer)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClaimError(CdiFuseError):
    """One ResourceClaim cannot be prepared on this node; the kubelet gets the message for that claim."""

    def __init__(self, message: str, *, claim: str = "") -> None:
        super().__init__(message)
        self.claim = claim


class InvalidOptionError(CdiFuseError):
    """An option value the library cannot work with; `option` names it as the CLI spells it."""

    def __init__(self, message: str, *, option: str) -> None:
        super().__init__(message)
        self.option = option
