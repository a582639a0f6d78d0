"""Fleet benchmark: ``zdu fleet upgrade --json`` over 10 to 1,000 simulated cells in 4 rings.

For each size it writes a fleet like examples/fleet-sim.toml (the same rings, the cells split
1 : 9 : 30 : 60 between them), runs the real command in a fresh process, and records

* wall time, from the start of the process to its exit;
* the simulated work along the critical path: per ring, the cells' own simulated waits (what each
  cell's sim platform slept, from its state file) plus its verify phase, scheduled in file order on
  the ring's concurrency (the makespan a zero-cost orchestrator would reach), plus the ring's bake;
* zdu's overhead: wall time minus that critical path;
* peak memory: the process's maximum resident set size (``wait4``).

The table goes to docs/benchmarks-fleet.md. ``python bench/fleet.py --sizes 1000`` runs one size.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fleet-sim.toml"
SHARES = (0.01, 0.09, 0.30, 0.60)
LIMIT_OVERHEAD_S = 60.0
LIMIT_MEMORY_MB = 200.0


def fleet_text(cells: int) -> str:
    """The example fleet with ``cells`` cells in the same four rings."""
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    counts = [max(1, round(cells * share)) for share in SHARES]
    counts[-1] = max(1, cells - sum(counts[:-1]))
    text = EXAMPLE.read_text(encoding="utf-8")
    for entry, count in zip(example["cells"], counts, strict=True):
        text = text.replace(f"count = {entry['count']}\n", f"count = {count}\n", 1)
    return text


def critical_path(fleet_file: Path, state_dir: Path) -> float:
    """Simulated work along the critical path (seconds), from the cells' state files."""
    fleet = tomllib.loads(fleet_file.read_text(encoding="utf-8"))
    total = 0.0
    for ring in fleet["rings"]:
        work = []
        for entry in fleet["cells"]:
            if entry["ring"] != ring["name"]:
                continue
            for index in range(entry.get("count", 1)):
                name = entry["name"].format(index=index)
                state = json.loads((state_dir / "targets" / name / "sim.json").read_text(encoding="utf-8"))
                work.append(state["work_seconds"] + ring.get("verify_seconds", 2.0))
        lanes = [0.0] * ring.get("concurrency", 1)
        for seconds in work:  # list scheduling in file order, as the runner starts them
            heapq.heapreplace(lanes, lanes[0] + seconds)
        total += max(lanes) + ring.get("bake_seconds", 0.0)
    return total


def run(cells: int) -> dict[str, float]:
    """Run the fleet of ``cells`` cells once; its figures."""
    with tempfile.TemporaryDirectory(prefix="zdu-bench-fleet-") as directory:
        fleet_file = Path(directory) / "fleet.toml"
        fleet_file.write_text(fleet_text(cells), encoding="utf-8")
        started = time.monotonic()
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from zdu.cli import main; main()",
                "fleet",
                "upgrade",
                str(fleet_file),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        report = json.loads(output)
        succeeded = sum(1 for cell in report["cells"] if cell["state"] == "succeeded")
        if report["status"] != "succeeded" or succeeded != cells:
            raise SystemExit(f"{cells} cells: {report['status']} ({report['reason']}), {succeeded} succeeded")
        path = critical_path(fleet_file, Path(directory) / ".zdu" / "fleet-sim")
        return {
            "cells": cells,
            "wall_s": round(wall, 2),
            "critical_path_s": round(path, 2),
            "overhead_s": round(wall - path, 2),
            "overhead_per_cell_ms": round((wall - path) / cells * 1000, 1),
            "peak_mb": round(usage.ru_maxrss / 1024, 1),
        }


def main() -> None:
    """Run every size, print the table, write docs/benchmarks-fleet.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 300, 1000])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks-fleet.md")
    args = parser.parse_args()
    rows = []
    for cells in args.sizes:
        row = run(cells)
        print(json.dumps(row), flush=True)
        rows.append(row)
    lines = [
        "# Fleet benchmark",
        "",
        f"`python bench/fleet.py` (also run by `nox -s bench`) on {platform.node()}, {os.cpu_count()} "
        f"CPUs, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}: "
        "`zdu fleet upgrade FLEET --json` over "
        "the rings of examples/fleet-sim.toml (cells split 1 : 9 : 30 : 60; concurrency 5, 30, 60, 100; "
        "2 s bake each), every cell an ordinary rolling upgrade of 2 simulated instances.",
        "",
        "Overhead is wall time beyond the simulated work along the critical path (each ring's cells "
        "scheduled on its concurrency, plus its bake); peak memory is the process's maximum RSS. "
        f"Targets at 1,000 cells: overhead <= {LIMIT_OVERHEAD_S:.0f} s, "
        f"peak memory <= {LIMIT_MEMORY_MB:.0f} MB.",
        "",
        "| cells | wall | simulated critical path | zdu overhead | overhead per cell | peak memory |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['cells']} | {r['wall_s']:.1f} s | {r['critical_path_s']:.1f} s | {r['overhead_s']:.1f} s | "
        f"{r['overhead_per_cell_ms']:.0f} ms | {r['peak_mb']:.0f} MB |"
        for r in rows
    ]
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    largest = max(rows, key=lambda r: r["cells"])
    if largest["overhead_s"] > LIMIT_OVERHEAD_S or largest["peak_mb"] > LIMIT_MEMORY_MB:
        raise SystemExit(f"over the targets at {largest['cells']} cells: {largest}")


if __name__ == "__main__":
    main()
