"""``zdu local status CONFIG``: what a local fleet runs, from its ``state.json`` and its processes.

One line per instance (id, version, address, pid, whether it runs, whether the router sends it
traffic, its log file), and the router (its URL, the weight of each group). Read-only: it changes
nothing and needs no lock.
"""

from __future__ import annotations

from typing import Any

import psutil

from zdu_local.platform import LocalPlatform
from zdu_local.state import InstanceRecord

__all__ = ["fleet_status", "render_fleet_status"]


def _alive(record: InstanceRecord) -> bool:
    try:
        process = psutil.Process(record.pid)
        return (
            abs(process.create_time() - record.started_at) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def fleet_status(platform: LocalPlatform) -> dict[str, Any]:
    """The fleet as JSON-ready data: the router and every instance the state file lists."""
    state = platform.state
    router = state.router
    routed = set(router.routed) if router is not None else set()
    return {
        "state_dir": str(platform.state_dir),
        "router": {
            "url": platform.router.url if router is not None else None,
            "running": router is not None and platform.router.running(),
            "weights": dict(router.weights) if router is not None else {},
        },
        "instances": [
            {
                "id": record.id,
                "group": record.group,
                "version": record.version,
                "address": record.address,
                "pid": record.pid,
                "running": _alive(record),
                "routed": record.id in routed,
                "log": record.log,
            }
            for record in state.instances
        ],
    }


def render_fleet_status(status: dict[str, Any]) -> str:
    """The fleet for a person: the router, then one line per instance."""
    router = status["router"]
    if not status["instances"] and not router["running"]:
        return f"no fleet runs in {status['state_dir']} (start it with 'zdu local up CONFIG')"
    weights = ", ".join(f"{group}={weight}" for group, weight in router["weights"].items()) or "none"
    running = "running" if router["running"] else "not running"
    lines = [
        f"router {router['url'] or '-'} ({running}); weights: {weights}",
        f"{'instance':<14} {'version':<10} {'address':<22} {'pid':>7}  {'state':<8} {'routed':<6} log",
    ]
    for instance in status["instances"]:
        lines.append(
            f"{instance['id']:<14} {instance['version']:<10} {instance['address']:<22} {instance['pid']:>7}  "
            f"{'running' if instance['running'] else 'dead':<8} {'yes' if instance['routed'] else 'no':<6} "
            f"{instance['log']}"
        )
    return "\n".join(lines)
