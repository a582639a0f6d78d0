"""GitLab CI as the fleet's engine: a pipeline with a stage per ring and a job per cell.

When one machine is not enough (cells in many networks, runners close to them), GitLab itself can
run the fleet: :func:`pipeline` writes a ``.gitlab-ci.yml`` in which

* every ring has its stage, and its bake a stage right after it: GitLab starts a stage only when the
  stages before it succeeded, so a failed cell (or a failed bake) stops every later ring;
* every cell step is a job running ``zdu fleet config`` (its configuration, from the fleet file in
  the repository) and ``zdu upgrade`` on it, with ``resource_group: zdu-cell-NAME`` so GitLab itself
  never runs two upgrades of one cell at once, across pipelines too;
* a ring's ``concurrency`` is kept by chaining its jobs in that many lanes with ``needs`` (the job
  ``concurrency`` places later waits for the one before it in its lane);
* a ring with ``approval`` gets a manual job its first jobs need; GitLab shows it as a play button;
* the bake job runs ``zdu fleet bake``: it counts the ring's cells not serving the release against the
  failure budget, then watches the ring's probes and health for ``bake_seconds``. With a budget, the
  cell jobs may fail (``allow_failure``) and the bake job decides.

The file is written as JSON, which is YAML: no YAML library is needed, and GitLab reads it as is.
Maintenance windows are the pipeline schedule's business in this mode (a scheduled pipeline per
window); the file says so in its header.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from zdu.fleet import Fleet

__all__ = ["bake_job_name", "cell_job_name", "pipeline", "render_pipeline"]


def cell_job_name(cell: str, version: str) -> str:
    """The job that upgrades ``cell`` to ``version``."""
    return f"upgrade {cell} to {version}"


def bake_job_name(ring: str) -> str:
    """The bake job of ``ring``."""
    return f"bake {ring}"


def approval_job_name(ring: str) -> str:
    """The manual approval job of ``ring``."""
    return f"approve {ring}"


def pipeline(fleet: Fleet, fleet_file: str, *, zdu: str = "zdu") -> dict[str, Any]:
    """The pipeline as a mapping.

    :param fleet_file: the fleet file's path as jobs see it (relative to the repository's root).
    :param zdu: how jobs call zdu (``zdu``, or ``python -m zdu.cli`` and the like).
    """
    quoted = shlex.quote(fleet_file)
    stages: list[str] = []
    jobs: dict[str, Any] = {}
    for ring in fleet.rings:
        stage, bake_stage = ring.name, f"{ring.name}-bake"
        stages += [stage, bake_stage]
        approval = approval_job_name(ring.name) if ring.approval else None
        if approval is not None:
            jobs[approval] = {
                "stage": stage,
                "when": "manual",
                "allow_failure": False,
                "script": [f"echo 'ring {ring.name} approved to start'"],
            }
        lanes: list[str | None] = [None] * ring.concurrency
        for position, cell in enumerate(fleet.cells_of(ring.name)):
            previous = cell.version
            for step in fleet.path_of(cell):
                name = cell_job_name(cell.name, str(step))
                config = f"zdu-{cell.name}-{step}.toml"
                job: dict[str, Any] = {
                    "stage": stage,
                    "resource_group": f"zdu-cell-{cell.name}",
                    "variables": {"ZDU_CELL": cell.name, "ZDU_FROM": str(previous), "ZDU_TO": str(step)},
                    "script": [
                        f"{zdu} fleet config {quoted} {shlex.quote(cell.name)} --to {step} -o {config}",
                        f"{zdu} upgrade {config}",
                    ],
                }
                lane = position % ring.concurrency  # every step of a cell in the same lane, in order
                before = lanes[lane]
                needs = [before] if before is not None else ([approval] if approval is not None else None)
                if needs is not None:
                    job["needs"] = needs
                if ring.failure_budget > 0:
                    job["allow_failure"] = True
                jobs[name] = job
                lanes[lane] = name
                previous = step
        jobs[bake_job_name(ring.name)] = {
            "stage": bake_stage,
            "script": [f"{zdu} fleet bake {quoted} {shlex.quote(ring.name)}"],
        }
    return {"stages": stages, **jobs}


def render_pipeline(fleet: Fleet, fleet_file: str, *, zdu: str = "zdu") -> str:
    """The pipeline as the text of a ``.gitlab-ci.yml`` (JSON, which YAML reads)."""
    header = [
        f"# The fleet {fleet.name} to {fleet.release}, ring by ring,",
        f"# as 'zdu fleet pipeline {fleet_file}' wrote it.",
        "# Cells start when the pipeline runs: schedule it inside the cells' maintenance windows, outside",
        "# change freezes. Regenerate it when the fleet file changes.",
    ]
    return "\n".join(header) + "\n" + json.dumps(pipeline(fleet, fleet_file, zdu=zdu), indent=2) + "\n"


def write_pipeline(fleet: Fleet, fleet_file: str, out: Path, *, zdu: str = "zdu") -> None:
    """Write the pipeline to ``out``."""
    out.write_text(render_pipeline(fleet, fleet_file, zdu=zdu), encoding="utf-8")
