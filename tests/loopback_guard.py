"""The test process talks to loopback only: a connection to any other address, or a name
lookup of any name but localhost, fails at once instead of leaving the machine.

Installed for the whole session by conftest.py. A library that would reach out (a tokenizer
fetching its vocabulary, a version check) then fails loudly in the test that caused it.
Unix sockets (the Docker engine) are untouched.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class LeavesLoopback(ConnectionRefusedError):
    """A test tried to reach an address that is not loopback."""


def _is_loopback(host: Any) -> bool:
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(text.split("%")[0]).is_loopback
    except ValueError:
        return False


def install() -> None:
    """Refuse non-loopback connections and lookups in this process."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise LeavesLoopback(f"tests may reach loopback only, not {address[0]!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME,
                                  f"tests may look up loopback names only, not {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
