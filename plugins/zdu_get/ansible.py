"""Ansible through ansible-runner: one playbook (or role) on one host pattern, its events recorded.

Every run gets the environment's inventory and project directory, an explicit ``--limit``, extra
variables (``gitlab_version``) and environment variables (``SKIP_POST_DEPLOYMENT_MIGRATIONS``, which
GET's Rails role reads from its environment). Each task result per host is passed to ``on_event``, so
that the journal shows what ran where, in order.

A run limited to one host does not see the other hosts' facts, which GET's templates use (every
node's address in a configuration). With ``facts_dir``, every run uses a JSON fact cache there
(``gathering = smart``), and :meth:`AnsibleEnvironment.gather_facts` fills it for every host once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ansible_runner
import attrs

from zdu.plugins import UpgradeContext, UsageError, ZduError, redact

__all__ = ["AnsibleEnvironment", "AnsibleError", "AnsibleResult", "TaskResult"]

log = logging.getLogger("zdu.get.ansible")

_RESULTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


class AnsibleError(ZduError):
    """An Ansible run failed; the message names the run, the host and the task."""


@attrs.frozen
class TaskResult:
    """One task's result on one host."""

    host: str
    task: str
    status: str
    message: str = ""


@attrs.frozen
class AnsibleResult:
    """How a run ended."""

    status: str
    rc: int
    tasks: tuple[TaskResult, ...]


def _binary(name: str) -> str:
    """``ansible-playbook`` next to this Python when there (a virtualenv), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


@contextlib.contextmanager
def _ansible_on_path() -> Iterator[None]:
    """Let ansible-runner find ``ansible-playbook`` installed next to this Python (a virtualenv).

    ansible-runner looks the program up on ``PATH`` (its ``binary`` option would turn its event
    stream off); a virtualenv used without being activated is not on it.
    """
    beside = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if shutil.which("ansible-playbook") or beside in path.split(os.pathsep):
        yield
        return
    os.environ["PATH"] = os.pathsep.join([beside, path])
    try:
        yield
    finally:
        os.environ["PATH"] = path


@attrs.define
class AnsibleEnvironment:
    """An environment's Ansible: its project directory (playbooks, roles) and inventory."""

    project_dir: Path
    inventory: Path
    work_dir: Path
    facts_dir: Path | None = None
    _inventory_cache: dict[str, Any] | None = None

    def _envvars(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        envvars = {"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False"}
        if self.facts_dir is not None:
            envvars.update(ANSIBLE_GATHERING="smart", ANSIBLE_CACHE_PLUGIN_TIMEOUT="86400")
        envvars.update(extra or {})
        return envvars

    def _fact_cache(self) -> dict[str, Any]:
        """ansible-runner's own fact cache options, pointed at ``facts_dir`` (an absolute path).

        ansible-runner sets ``ANSIBLE_CACHE_PLUGIN_CONNECTION`` itself (to its private directory,
        removed after each run): its ``fact_cache`` option is where the cache can be kept.
        """
        if self.facts_dir is None:
            return {}
        return {"fact_cache": str(self.facts_dir.resolve()), "fact_cache_type": "jsonfile"}

    def gather_facts(self, hosts: str = "all") -> None:
        """Gather the facts of every host of ``hosts`` into the fact cache (needs ``facts_dir``)."""
        if self.facts_dir is None:
            raise UsageError("gather_facts needs a facts_dir (the fact cache)")
        self.facts_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix="ansible-facts-", dir=self.work_dir))
        try:
            with _ansible_on_path():
                runner = ansible_runner.run(
                    private_data_dir=str(private),
                    inventory=str(self.inventory),
                    host_pattern=hosts,
                    module="ansible.builtin.setup",
                    quiet=True,
                    envvars=self._envvars(),
                    **self._fact_cache(),
                )
            output = runner.stdout.read() if runner.status != "successful" else ""
        finally:
            shutil.rmtree(private, ignore_errors=True)
        if runner.status != "successful":
            raise AnsibleError(
                f"gathering the facts of {hosts!r} {runner.status} (rc {runner.rc}): {_last_error(output)}"
            )

    def inventory_list(self) -> dict[str, Any]:
        """``ansible-inventory --list`` of the environment's inventory (read once)."""
        if self._inventory_cache is None:
            done = subprocess.run(
                [_binary("ansible-inventory"), "-i", str(self.inventory), "--list"],
                capture_output=True,
                text=True,
                check=False,
            )
            try:
                out = json.loads(done.stdout) if done.returncode == 0 else None
            except ValueError:
                out = None
            if not isinstance(out, dict):
                last = redact((done.stderr.strip().splitlines() or [""])[-1])
                raise UsageError(f"ansible inventory {self.inventory} could not be read: {last}")
            self._inventory_cache = out
        return self._inventory_cache

    def run(
        self,
        label: str,
        hosts: str,
        *,
        playbook: str | None = None,
        role: str | None = None,
        extravars: Mapping[str, Any] | None = None,
        on_task: Callable[[TaskResult], None] | None = None,
        envvars: Mapping[str, str] | None = None,
    ) -> AnsibleResult:
        """Run ``playbook`` (or ``role``) on the host pattern ``hosts``; raise AnsibleError on failure.

        :param label: what the run is, for messages (``consul``, ``rails node rails-2``).
        """
        if (playbook is None) == (role is None):
            raise UsageError(f"{label}: give a playbook or a role, not {'both' if playbook else 'neither'}")
        tasks: list[TaskResult] = []

        def handle(event: dict[str, Any]) -> bool:
            status = _RESULTS.get(str(event.get("event", "")))
            data = event.get("event_data", {})
            if status is not None:
                result = data.get("res", {}) if isinstance(data.get("res"), dict) else {}
                message = ""
                if status in ("failed", "unreachable"):
                    message = str(result.get("msg") or "")
                    detail = str(result.get("stderr") or "").strip()
                    message = f"{message}: {detail}" if detail else message
                # a task's output may print a password it was given: redacted before anyone sees it
                task = TaskResult(
                    str(data.get("host", "")), redact(str(data.get("task", ""))), status, redact(message)
                )
                tasks.append(task)
                if on_task is not None:
                    on_task(task)
            return True

        self.work_dir.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix="ansible-", dir=self.work_dir))
        options: dict[str, Any] = {
            "private_data_dir": str(private),
            "project_dir": str(self.project_dir),
            "inventory": str(self.inventory),
            "limit": hosts,
            "extravars": dict(extravars or {}),
            "event_handler": handle,
            "quiet": True,
            "envvars": self._envvars(envvars),
            **self._fact_cache(),
        }
        if playbook is not None:
            options["playbook"] = playbook
        else:
            options.update(role=role, hosts=hosts, roles_path=[str(self.project_dir / "roles")])
        try:
            with _ansible_on_path():
                runner = ansible_runner.run(**options)
            output = redact(runner.stdout.read()) if runner.status != "successful" else ""
        finally:
            shutil.rmtree(private, ignore_errors=True)
        result = AnsibleResult(str(runner.status), int(runner.rc or 0), tuple(tasks))
        if result.status != "successful":
            failed = [t for t in tasks if t.status in ("failed", "unreachable")]
            where = "; ".join(f"{t.host}: task {t.task!r} {t.status}: {t.message}" for t in failed)
            raise AnsibleError(
                f"ansible run {label!r} ({playbook or role} on {hosts}) {result.status} (rc {result.rc})"
                + (f": {where}" if where else f": {_last_error(output)}")
            )
        return result


def _last_error(output: str) -> str:
    """The last ERROR line of ansible-playbook's output (a syntax error, a missing playbook)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "[ERROR]"))]
    return (errors or lines or ["no output"])[-1][:300]


def journal_tasks(ctx: UpgradeContext, label: str) -> Callable[[TaskResult], None]:
    """An ``on_task`` callback that records each Ansible task of run ``label`` as a journal event."""

    def record(task: TaskResult) -> None:
        ctx.event(
            "ansible",
            f"{label}: {task.task} on {task.host}: {task.status}",
            run=label,
            host=task.host,
            task=task.task,
            status=task.status,
        )

    return record
