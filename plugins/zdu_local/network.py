"""Ports, addresses and TCP connections on this machine, as the local platform sees them."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Collection

import psutil

__all__ = ["established_connections", "format_address", "free_port", "http_status"]


def format_address(host: str, port: int) -> str:
    """Return ``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str) -> int:
    """Return a TCP port nothing listens on at ``host`` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def http_status(host: str, port: int, path: str, timeout: float = 1.0) -> int | None:
    """Return the status ``GET http://host:port/path`` answers; None when the connection fails."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def established_connections(ports: Collection[int]) -> dict[int, int]:
    """Count the ESTABLISHED TCP connections each of the local ``ports`` serves now, by port."""
    counts = dict.fromkeys(ports, 0)
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_ESTABLISHED and connection.laddr:
            port = connection.laddr.port
            if port in counts:
                counts[port] += 1
    return counts
