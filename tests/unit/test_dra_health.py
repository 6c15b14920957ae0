"""/healthz and /livez of the DRA driver over real HTTP on a free port."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from cdi_fuse import errors
from cdi_fuse.dra import health


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_follows_the_report_and_livez_always_answers() -> None:
    state = {"ok": False}
    server = health.HealthServer("127.0.0.1:0", lambda: (state["ok"], "registered=False"))
    server.start()
    try:
        assert get(server.port, "/healthz") == (503, "not ready: registered=False\n")
        assert get(server.port, "/livez") == (200, "ok: alive\n")
        state["ok"] = True
        assert get(server.port, "/healthz")[0] == 200
        assert get(server.port, "/metrics")[0] == 404
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("0.0.0.0:9401", ("0.0.0.0", 9401), id="ipv4"),
        pytest.param(":9401", ("0.0.0.0", 9401), id="all-interfaces"),
        pytest.param("[::1]:9401", ("::1", 9401), id="ipv6"),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert health.parse_address(address) == expected


@pytest.mark.parametrize("address", ["9401", "host:", "host:port", "h:70000"])
def test_parse_address_refuses(address: str) -> None:
    with pytest.raises(errors.InvalidOptionError, match="expected host:port") as caught:
        health.parse_address(address)
    assert caught.value.option == "--health-address"
