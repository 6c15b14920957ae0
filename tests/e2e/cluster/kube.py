"""Talking to the test cluster: ``kubectl`` for what a user would type, a small REST client for the rest.

:class:`Kubectl` runs the real kubectl against the admin kubeconfig (apply, ``apply -k``, exec, JSON
output). :class:`ApiClient` speaks HTTPS to the apiserver with the admin client cert, for polling and
watches that would otherwise start a kubectl process every few milliseconds. :class:`NodeWatch` follows
the node's status in a thread and records when a resource's allocatable count changed, which is how the
capacity gaps of kubelet restarts and rolling updates are measured.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlparse

import yaml

Obj = dict[str, Any]
T = TypeVar("T")


class KubeError(Exception):
    """kubectl or the apiserver refused; the message carries what it said."""


class WaitTimeoutError(KubeError):
    """A wait ran out of time; the message says what was last seen."""


@dataclass
class Kubectl:
    binary: Path
    kubeconfig: Path
    cache_dir: Path  # kubectl's discovery/http cache, else it writes ~/.kube/cache

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubeError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def json(self, *args: str) -> Obj:
        return dict(json.loads(self.run(*args, "-o", "json").stdout))

    def apply(self, manifests: str | Obj | Sequence[Obj], *, namespace: str | None = None) -> str:
        """``kubectl apply -f -`` of YAML text, one object or a list of objects."""
        if isinstance(manifests, str):
            text = manifests
        elif isinstance(manifests, dict):
            text = yaml.safe_dump(manifests)
        else:
            text = yaml.safe_dump_all(list(manifests))
        ns = ["-n", namespace] if namespace else []
        return self.run("apply", *ns, "-f", "-", stdin=text).stdout

    def kustomize(self, directory: Path) -> list[Obj]:
        return [doc for doc in yaml.safe_load_all(self.run("kustomize", str(directory)).stdout) if doc]

    def exec(
        self, pod: str, command: Sequence[str], *, namespace: str = "default", container: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        where = ["-c", container] if container else []
        return self.run("exec", "-n", namespace, pod, *where, "--", *command, check=False, timeout=timeout)

    def logs(self, pod: str, *, namespace: str = "default", container: str | None = None) -> str:
        where = ["-c", container] if container else []
        return self.run("logs", "-n", namespace, pod, *where, check=False).stdout


@dataclass
class ApiClient:
    server: str  # https://127.0.0.1:<port>
    ca: Path
    cert: Path
    key: Path
    _context: ssl.SSLContext = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._context = ssl.create_default_context(cafile=str(self.ca))
        self._context.load_cert_chain(str(self.cert), str(self.key))

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        url = urlparse(self.server)
        return http.client.HTTPSConnection(
            url.hostname or "127.0.0.1", url.port, context=self._context, timeout=timeout
        )

    def request(self, method: str, path: str, body: Obj | None = None, *, timeout: float = 30.0) -> tuple[int, Obj]:
        conn = self._connection(timeout)
        try:
            headers = {"Accept": "application/json"}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
                headers["Content-Type"] = content_type
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(data) if data else {}
        except json.JSONDecodeError:
            parsed = {"raw": data.decode(errors="replace")}
        return response.status, parsed

    def get(self, path: str, *, timeout: float = 30.0) -> Obj:
        status, body = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise KubeError(f"GET {path}: {status} {body.get('message', body)}")
        return body

    def raw_get(self, path: str, *, timeout: float = 10.0) -> tuple[int, str]:
        conn = self._connection(timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()

    def watch(self, path: str, params: dict[str, str], *, stop: threading.Event, timeout_s: int = 300) -> Iterator[Obj]:
        """Watch events (``{"type": ..., "object": ...}``) until ``stop`` is set or the server ends it."""
        query = urlencode({**params, "watch": "1", "timeoutSeconds": str(timeout_s), "allowWatchBookmarks": "false"})
        conn = self._connection(timeout_s + 10)
        try:
            conn.request("GET", f"{path}?{query}", headers={"Accept": "application/json"})
            response = conn.getresponse()
            if response.status != 200:
                raise KubeError(f"watch {path}: {response.status} {response.read()[:300]!r}")
            while not stop.is_set():
                line = response.readline()
                if not line:
                    return
                yield json.loads(line)
        finally:
            conn.close()


def wait_for(
    what: str,
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    interval_s: float = 0.2,
    last: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy; raise with ``what`` (and ``last()``) on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(KubeError):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            detail = ""
            if last is not None:
                with contextlib.suppress(Exception):
                    detail = f"; last seen: {last()}"
            raise WaitTimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")
        time.sleep(interval_s)


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    value: int | None  # allocatable count, None when the resource is not listed


@dataclass
class NodeWatch:
    """Records every change of ``status.allocatable[resource]`` of one node, from a watch thread."""

    api: ApiClient
    node: str
    resource: str
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _value(self, node: Obj) -> int | None:
        raw = node.get("status", {}).get("allocatable", {}).get(self.resource)
        return int(raw) if raw is not None else None

    def _record(self, value: int | None) -> None:
        with self._lock:
            if not self.samples or self.samples[-1].value != value:
                self.samples.append(Sample(time.monotonic(), value))

    def _run(self) -> None:
        path = "/api/v1/nodes"
        while not self._stop.is_set():
            try:
                listing = self.api.get(f"{path}?fieldSelector=metadata.name%3D{self.node}")
                for item in listing.get("items", []):
                    self._record(self._value(item))
                version = listing["metadata"]["resourceVersion"]
                params = {"fieldSelector": f"metadata.name={self.node}", "resourceVersion": version}
                for event in self.api.watch(path, params, stop=self._stop, timeout_s=60):
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._record(self._value(event["object"]))
            except (OSError, KubeError, ValueError, http.client.HTTPException):
                time.sleep(0.1)  # apiserver gone for a moment: list again

    def start(self) -> NodeWatch:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.node}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def current(self) -> int | None:
        with self._lock:
            return self.samples[-1].value if self.samples else None

    def wait_value(self, predicate: Callable[[int | None], bool], *, timeout_s: float) -> float:
        """Wait until the recorded value satisfies ``predicate``; return when (monotonic) it first did."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            samples = self.snapshot()
            if samples and predicate(samples[-1].value):
                return samples[-1].at
            time.sleep(0.02)
        raise WaitTimeoutError(f"allocatable {self.resource} never matched; samples {self.snapshot()}")

    def gaps_below(self, wanted: int, since: float) -> list[float]:
        """Durations (s) after ``since`` during which allocatable was below ``wanted`` (open gap to now)."""
        gaps, low_since = [], None
        for sample in self.snapshot():
            if sample.at < since:
                low_since = sample.at if (sample.value or 0) < wanted else None
                continue
            if (sample.value or 0) < wanted and low_since is None:
                low_since = sample.at
            elif (sample.value or 0) >= wanted and low_since is not None:
                gaps.append(sample.at - max(low_since, since))
                low_since = None
        if low_since is not None:
            gaps.append(time.monotonic() - max(low_since, since))
        return gaps
