"""The test process cannot leave loopback: other addresses and names are refused at once,
without a packet sent; loopback still works."""

from __future__ import annotations

import socket

import pytest
from fake_servers import FakeServer
from loopback_guard import LeavesLoopback


def test_a_non_loopback_address_is_refused_before_any_packet() -> None:
    with socket.socket() as sock, pytest.raises(LeavesLoopback, match="loopback only"):
        sock.connect(("192.0.2.1", 9))  # TEST-NET-1: never reached, refused in the process


def test_a_name_lookup_other_than_localhost_is_refused() -> None:
    with pytest.raises(socket.gaierror, match="loopback names only"):
        socket.getaddrinfo("example.invalid", 443)


def test_loopback_still_works(server: FakeServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5):
        pass
    assert socket.getaddrinfo("localhost", 80)
