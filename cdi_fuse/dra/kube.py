"""The Kubernetes API for the DRA driver, through the `kubernetes` client, imported only when used.

The client provides configuration (in-cluster service account with token refresh, or a kubeconfig), TLS,
authentication and the HTTP transport; requests and answers stay plain JSON dicts, so no generated model
class is loaded and fields the client does not know yet (or drops) reach the server as written.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cdi_fuse import errors
from cdi_fuse.dra import api

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["KubeApi", "SliceWatch", "load_client"]

log = logging.getLogger(__name__)

_RESOURCE = "/apis/resource.k8s.io/v1"
_TIMEOUT = 10.0


def load_client(kubeconfig: Path | None = None) -> ApiClient:
    """An ApiClient from `kubeconfig`, else the pod's service account, else $KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None, client_configuration=configuration
            )
    except (config.ConfigException, OSError) as exc:
        where = str(kubeconfig) if kubeconfig else "the pod's service account or $KUBECONFIG"
        raise errors.ApiServerError(f"cannot load the Kubernetes client configuration from {where}: {exc}") from exc
    return client.ApiClient(configuration)


def _selector(node_name: str, driver: str) -> str:
    return f"spec.nodeName={node_name},spec.driver={driver}"


class KubeApi:
    """SliceStore and ClaimReader over the real API server (plain dicts in and out)."""

    def __init__(self, client: ApiClient, *, timeout: float = _TIMEOUT) -> None:
        self._client = client
        self._timeout = timeout

    # --- transport ---

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
        timeout: float | tuple[float, float] | None = None,
    ) -> Any:
        """The raw response (urllib3, not yet read) of one request; ApiServerError for any failure."""
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            request = self._client.param_serialize(
                method=method,
                resource_path=path,
                query_params=list(query) or None,
                header_params=headers,
                body=dict(body) if body is not None else None,
                auth_settings=["BearerToken"],
            )
            response = self._client.call_api(*request, _request_timeout=timeout or self._timeout)
        except ApiException as exc:
            raise errors.ApiServerError(f"{method} {path}: {exc.reason}", status=exc.status or None) from exc
        except Exception as exc:  # urllib3/ssl/socket errors: no answer from the server
            raise errors.ApiServerError(f"{method} {path}: {exc}") from exc
        if not 200 <= response.status <= 299:
            text = response.read().decode("utf-8", "replace")  # type: ignore[no-untyped-call]
            try:
                message = json.loads(text).get("message") or text
            except (ValueError, AttributeError):
                message = text
            raise errors.ApiServerError(f"{method} {path}: {response.status} {message}", status=response.status)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return json.loads(response.read())
        except ValueError as exc:
            raise errors.ApiServerError(f"{method} {path}: the answer is not JSON: {exc}") from exc

    # --- discovery ---

    def served_versions(self, group: str = "resource.k8s.io") -> list[str]:
        """Versions of an API group the server serves; [] when it serves none."""
        try:
            data = self._json("GET", f"/apis/{group}")
        except errors.ApiServerError as exc:
            if exc.status == 404:
                return []
            raise
        return [str(v.get("version")) for v in data.get("versions") or []]

    # --- SliceStore ---

    def list_slices(self, *, node_name: str, driver: str) -> list[dict[str, Any]]:
        data = self._json("GET", f"{_RESOURCE}/resourceslices", query=[("fieldSelector", _selector(node_name, driver))])
        return list(data.get("items") or [])

    def create_slice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"{_RESOURCE}/resourceslices", body=body)
        return result

    def replace_slice(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json("PUT", f"{_RESOURCE}/resourceslices/{quote(name)}", body=body)
        return result

    def delete_slice(self, name: str, *, resource_version: str | None = None) -> None:
        body = {"preconditions": {"resourceVersion": resource_version}} if resource_version else None
        self._json("DELETE", f"{_RESOURCE}/resourceslices/{quote(name)}", body=body)

    def node_uid(self, node_name: str) -> str | None:
        try:
            node = self._json("GET", f"/api/v1/nodes/{quote(node_name)}")
        except errors.ApiServerError as exc:
            log.warning("cannot read Node %s (%s): the ResourceSlice gets no owner reference", node_name, exc)
            return None
        uid = (node.get("metadata") or {}).get("uid")
        return str(uid) if uid else None

    # --- ClaimReader ---

    def allocated_devices(self, claim: api.ClaimRef) -> list[api.AllocatedDevice]:
        path = f"{_RESOURCE}/namespaces/{quote(claim.namespace)}/resourceclaims/{quote(claim.name)}"
        try:
            data = self._json("GET", path)
        except errors.ApiServerError as exc:
            if exc.status == 404:
                raise errors.ClaimError(
                    f"ResourceClaim {claim.namespace}/{claim.name} not found", claim=claim.uid
                ) from exc
            raise errors.ClaimError(
                f"cannot read ResourceClaim {claim.namespace}/{claim.name}: {exc}", claim=claim.uid
            ) from exc
        return allocation_results(data, claim)

    # --- watching ---

    def watch_slices(self, *, node_name: str, driver: str, timeout_seconds: int) -> Iterator[str]:
        """Event types of one watch request on this node's slices of `driver` (ends after the timeout)."""
        raw = self._send(
            "GET",
            f"{_RESOURCE}/resourceslices",
            query=[
                ("fieldSelector", _selector(node_name, driver)),
                ("watch", "true"),
                ("timeoutSeconds", str(timeout_seconds)),
                ("allowWatchBookmarks", "false"),
            ],
            timeout=(self._timeout, timeout_seconds + 30.0),
        )
        response = getattr(raw, "response", raw)  # the client's RESTResponse wraps the urllib3 response
        buffer = b""
        try:
            for chunk in response.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        try:
                            yield str(json.loads(line).get("type"))
                        except ValueError:
                            yield "UNPARSABLE"
        finally:
            response.release_conn()


def allocation_results(data: Mapping[str, Any], claim: api.ClaimRef) -> list[api.AllocatedDevice]:
    """The allocation of a ResourceClaim as the API returns it; ClaimError when it is not the claim meant."""
    metadata = data.get("metadata") or {}
    if metadata.get("uid") != claim.uid:
        raise errors.ClaimError(
            f"ResourceClaim {claim.namespace}/{claim.name} has UID {metadata.get('uid')!r}, not {claim.uid!r} "
            "(deleted and created again?)",
            claim=claim.uid,
        )
    allocation = (data.get("status") or {}).get("allocation")
    if not allocation:
        raise errors.ClaimError(f"ResourceClaim {claim.namespace}/{claim.name} is not allocated", claim=claim.uid)
    results = (allocation.get("devices") or {}).get("results") or []
    return [
        api.AllocatedDevice(
            request=str(r.get("request", "")),
            driver=str(r.get("driver", "")),
            pool=str(r.get("pool", "")),
            device=str(r.get("device", "")),
        )
        for r in results
    ]


class SliceWatch:
    """A thread that watches this node's slices and calls `hint()` on every event (and after each gap).

    Events are only hints: the driver then reads the slices and converges. A failed or ended watch is
    restarted with backoff; the first event of each new watch (the current state) is a hint too.
    """

    def __init__(
        self,
        kube: KubeApi,
        *,
        node_name: str,
        driver: str,
        hint: Callable[[], None],
        timeout_seconds: int = 300,
        max_backoff: float = 30.0,
    ) -> None:
        self._kube = kube
        self._node_name = node_name
        self._driver = driver
        self._hint = hint
        self._timeout_seconds = timeout_seconds
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slice-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                for event in self._kube.watch_slices(
                    node_name=self._node_name, driver=self._driver, timeout_seconds=self._timeout_seconds
                ):
                    if self._stop.is_set():
                        return
                    log.debug("ResourceSlice watch event %s", event)
                    self._hint()
                    backoff = 0.5
            except errors.ApiServerError as exc:
                log.warning("ResourceSlice watch failed (%s); retrying in %.1fs", exc, backoff)
            except Exception as exc:  # a dropped connection mid-stream
                log.warning("ResourceSlice watch ended (%s); retrying in %.1fs", exc, backoff)
            else:
                if time.monotonic() - started > 1.0:
                    continue  # a normal timeout: watch again at once
            self._hint()  # anything may have changed while not watching
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)
