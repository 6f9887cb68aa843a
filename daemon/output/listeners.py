"""Listening sockets for the servers (the socket sinks, the Wyoming server), so that a port
in use, a missing directory or a stale socket file read the same everywhere."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from intentd.daemon.errors import ConfigError


def listen_unix(path: str, mode: int, where: str) -> socket.socket:
    """A listening unix socket at ``path`` with permissions ``mode``. A stale socket file
    (left by a crashed run) is replaced; a live one or any other file is refused."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise ConfigError(f"{where}: directory {parent} does not exist; create it first")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"{where}: exists and is not a socket; refusing to replace "
                              "it (remove it or choose another path)")
        if _unix_socket_alive(path):
            raise ConfigError(f"{where}: another process is listening there; stop it or "
                              "choose another path")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        sock.bind(path)
        bound = True
        os.chmod(path, mode)
        sock.listen(16)
    except OSError as exc:
        sock.close()
        if bound:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise ConfigError(f"{where}: cannot listen: {exc}") from None
    return sock


def listen_tcp(host: str, port: int, where: str) -> socket.socket:
    """A listening TCP socket (port 0: a free one; read it from ``getsockname``)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{where}: cannot resolve host: {exc}") from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(16)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{where}: cannot listen: {exc}") from None
    return sock


def _unix_socket_alive(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.2)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True
