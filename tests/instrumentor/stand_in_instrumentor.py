"""A STAND-IN for Instrumentor, which is not public: what zdu's ``instrumentor`` strategy runs in tests.

Usage: ``stand_in_instrumentor.py STAGE TENANT_MODEL --inventory DIR --ansible-dir DIR``. Stage
``validate`` checks the tenant model's fields; stage ``configure`` upgrades the Rails nodes to the
model's version through the same Ansible playbook the ``get`` strategy runs
(``playbooks/gitlab_rails.yml``, real ansible-playbook on localhost). Faults for tests: ``--fail-stage
S`` exits 3 in stage S, ``--hang-stage S`` sleeps in stage S, both only when the model's version is
``--at-version``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["validate", "configure"])
    parser.add_argument("tenant_model", type=Path)
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--ansible-dir", required=True)
    parser.add_argument("--fail-stage", default="")
    parser.add_argument("--hang-stage", default="")
    parser.add_argument("--at-version", default="")
    arguments = parser.parse_args()
    model = json.loads(arguments.tenant_model.read_text(encoding="utf-8"))
    version = model.get("prerelease_version") or model.get("gitlab_version")
    print(
        f"stand-in instrumentor: stage {arguments.stage} for {model.get('tenant_id')} at {version}",
        flush=True,
    )
    if arguments.at_version in ("", version):
        if arguments.stage == arguments.fail_stage:
            print(f"stage {arguments.stage} failed (as asked)", flush=True)
            return 3
        if arguments.stage == arguments.hang_stage:
            time.sleep(600)
    if arguments.stage == "validate":
        for field in ("tenant_id", "gitlab_version"):
            if not isinstance(model.get(field), str):
                print(f"tenant model: {field} must be a string", flush=True)
                return 2
        print("tenant model ok", flush=True)
        return 0
    playbook = Path(sys.executable).parent / "ansible-playbook"
    done = subprocess.run(
        [
            str(playbook),
            "-i",
            arguments.inventory,
            "--limit",
            "gitlab_rails",
            "-e",
            f"gitlab_version={version}",
            "playbooks/gitlab_rails.yml",
        ],
        cwd=arguments.ansible_dir,
        check=False,
    )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
