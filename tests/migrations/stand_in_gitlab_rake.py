"""A STAND-IN for ``gitlab-rake``, for the tests of the ``gitlab-rake`` runner. Not GitLab.

It answers ``db:migrate`` and ``db:migrate:status`` the way GitLab's Rails tasks do, for the parts the
runner relies on: post-deployment migrations are left out while ``SKIP_POST_DEPLOYMENT_MIGRATIONS``
is *present* in the environment (GitLab tests presence, not value), ``db:migrate`` applies pending
migrations in version order and stops at the first failure (the earlier ones stay applied), and the
status lists ``up``/``down`` per migration. Controlled by environment variables:

* ``STAND_IN_RAKE_STATE``: a JSON file ``{"migrations": [{"version", "name", "post", "up"}],
  "background_migrations": [{"job_class_name", "table_name", "column_name", "status"}]}``, updated by
  ``db:migrate``; ``gitlab:background_migrations:status`` prints the background migrations as GitLab
  does (``Database: main``, then ``STATUS | JobClass,table,column,[arguments]``), and a background
  migration with ``"finished_after": N`` counts as finished from the N-th status call on (as if
  Sidekiq worked on it meanwhile);
* ``STAND_IN_RAKE_RECORD``: a file to which each call appends a JSON line ``{"argv", "env", "pid"}``;
* ``STAND_IN_RAKE_FAIL``: the version of a migration that fails;
* ``STAND_IN_RAKE_HANG``: when set, ``db:migrate`` starts a child process and both sleep until killed
  (their pids are appended to the record as ``{"hanging": [pid, child_pid]}``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _record(entry: dict[str, object]) -> None:
    with Path(os.environ["STAND_IN_RAKE_RECORD"]).open("a") as record:
        record.write(json.dumps(entry) + "\n")
        record.flush()


def _visible(migrations: list[dict[str, object]]) -> list[dict[str, object]]:
    skip_post = "SKIP_POST_DEPLOYMENT_MIGRATIONS" in os.environ
    return sorted(
        (m for m in migrations if not (skip_post and m["post"])), key=lambda m: int(str(m["version"]))
    )


def main(argv: list[str]) -> int:
    _record({"argv": argv, "env": dict(os.environ), "pid": os.getpid()})
    state_file = Path(os.environ["STAND_IN_RAKE_STATE"])
    state = json.loads(state_file.read_text())
    task = argv[0] if argv else ""
    if task == "db:migrate:status":
        print("\ndatabase: gitlabhq_production\n")
        print(" Status   Migration ID    Migration Name")
        print("--------------------------------------------------")
        for migration in _visible(state["migrations"]):
            status = "up" if migration["up"] else "down"
            print(f"  {status:>4}     {migration['version']}  {migration['name']}")
        return 0
    if task == "gitlab:background_migrations:status":
        print("Database: main")
        for migration in state.get("background_migrations", []):
            if "finished_after" in migration:
                migration["finished_after"] -= 1
                if migration["finished_after"] <= 0:
                    migration["status"] = "finished"
            fields = [migration["job_class_name"], migration["table_name"], migration["column_name"], "[]"]
            print(f"{migration['status']:<10} | {','.join(fields)}")
        state_file.write_text(json.dumps(state))
        return 0
    if task == "db:migrate":
        if os.environ.get("STAND_IN_RAKE_HANG"):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            _record({"hanging": [os.getpid(), child.pid]})
            print("stand-in: hanging", flush=True)
            time.sleep(600)
            return 1
        for migration in _visible(state["migrations"]):
            if migration["up"]:
                continue
            print(f"== {migration['version']} {migration['name']}: migrating ======", flush=True)
            if os.environ.get("STAND_IN_RAKE_FAIL") == migration["version"]:
                print(f"rake aborted!\nStandardError: stand-in failure in {migration['name']}", flush=True)
                return 1
            migration["up"] = True
            state_file.write_text(json.dumps(state))
            print(f"== {migration['version']} {migration['name']}: migrated (0.0010s) =====", flush=True)
        return 0
    print(f"stand-in gitlab-rake: unknown task {task!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
