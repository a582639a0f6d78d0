"""Ports, addresses and TCP connections on this machine, as the platforms that run processes here see them."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Collection

import psutil

__all__ = ["established_connections", "format_address", "free_port", "http_status", "inflight_requests"]


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


def inflight_requests(host: str, port: int, path: str, timeout: float = 1.0) -> int | None:
    """The ``requests`` count ``GET http://host:port/path`` answers as JSON (an app's requests in flight).

    None when the instance answers anything else: another status (404: it has no such endpoint), a
    body that is not a JSON object with an integer ``requests`` >= 0, or no answer at all.
    """
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        document = json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()
    requests = document.get("requests") if isinstance(document, dict) else None
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 0:
        return None
    return requests


def established_connections(ports: Collection[int]) -> dict[int, int]:
    """Count the ESTABLISHED TCP connections each of the local ``ports`` serves now, by port."""
    counts = dict.fromkeys(ports, 0)
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_ESTABLISHED and connection.laddr:
            port = connection.laddr.port
            if port in counts:
                counts[port] += 1
    return counts
