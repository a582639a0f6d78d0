"""Terraform through python-terraform: plan to a file, refuse destruction, apply that very plan.

A version upgrade should change nothing in the infrastructure. When the plan would destroy or replace
anything (a node rebuilt from a new image, a disk recreated), or change anything in place that is not
allow-listed (a machine type: the VM restarts), zdu refuses before anything is applied and names the
resources, so that a person decides outside the upgrade.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
from python_terraform import IsFlagged, Terraform

from zdu.plugins import ZduError, redact

__all__ = ["PlannedChange", "TerraformError", "TerraformPlanRefused", "TerraformRunner"]

log = logging.getLogger("zdu.get.terraform")


class TerraformError(ZduError):
    """A terraform command failed."""


class TerraformPlanRefused(ZduError):
    """The plan would destroy or replace resources; nothing was applied."""


@attrs.frozen
class PlannedChange:
    """One resource change of a saved plan."""

    address: str
    actions: tuple[str, ...]

    @property
    def destructive(self) -> bool:
        """Whether it destroys the resource (a delete, or a replace: delete and create)."""
        return "delete" in self.actions


@attrs.define
class TerraformRunner:
    """Runs terraform in ``directory`` with ``variables``; the plan file is kept in ``plan_file``."""

    directory: Path
    plan_file: Path
    variables: Mapping[str, str] = attrs.field(factory=dict)
    binary: str = "terraform"
    #: addresses (``*`` wildcards) that may change in place; any other change is refused
    allow: tuple[str, ...] = ()

    def _terraform(self) -> Terraform:
        return Terraform(working_dir=str(self.directory), terraform_bin_path=self.binary)

    def plan(self) -> list[PlannedChange]:
        """``terraform init`` and ``terraform plan -out=<plan_file>``; the changes it holds."""
        with warnings.catch_warnings():  # python-terraform logs with the deprecated Logger.warn
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._plan()

    def _check(
        self, command: str, result: tuple[int | None, str | None, str | None], ok: tuple[int, ...]
    ) -> str:
        code, out, err = result
        if code not in ok:
            message = redact(err or out or "").strip().splitlines()
            raise TerraformError(
                f"terraform {command} in {self.directory} failed (exit {code}): {' '.join(message[-3:])}"
            )
        return out or ""

    def _plan(self) -> list[PlannedChange]:
        terraform = self._terraform()
        self._check("init", terraform.init(input=False, reconfigure=None, backend=None), (0,))
        self.plan_file.parent.mkdir(parents=True, exist_ok=True)
        self._check(
            "plan",
            terraform.plan(
                out=str(self.plan_file),
                var=dict(self.variables) or None,
                input=False,
                detailed_exitcode=IsFlagged,
            ),
            (0, 2),
        )
        shown = self._check("show", terraform.cmd("show", str(self.plan_file), json=IsFlagged), (0,))
        document = json.loads(shown)
        changes = []
        for change in document.get("resource_changes", []):
            actions = tuple(change.get("change", {}).get("actions", []))
            if actions and actions != ("no-op",):
                changes.append(PlannedChange(change["address"], actions))
        return changes

    def refuse_destruction(self, changes: Sequence[PlannedChange]) -> None:
        """Raise TerraformPlanRefused naming every change that is destructive or not allow-listed.

        A version upgrade expects an empty plan; in-place updates pass only for the addresses in
        ``allow``; a destroy or a replace never does.
        """
        destructive = [c for c in changes if c.destructive]
        if destructive:
            named = ", ".join(f"{c.address} ({'/'.join(c.actions)})" for c in destructive)
            raise TerraformPlanRefused(
                f"terraform plan in {self.directory} would destroy or replace: {named}; nothing was applied"
            )
        unlisted = [c for c in changes if not any(fnmatch.fnmatchcase(c.address, a) for a in self.allow)]
        if unlisted:
            named = ", ".join(f"{c.address} ({'/'.join(c.actions)})" for c in unlisted)
            raise TerraformPlanRefused(
                f"terraform plan in {self.directory} would change {named}, not in platform.terraform_allow "
                "(a version upgrade expects an empty plan; an in-place update can restart a machine); "
                "nothing was applied"
            )

    def apply_saved_plan(self) -> None:
        """``terraform apply <plan_file>``: exactly what was planned and checked, nothing else."""
        terraform = self._terraform()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            result = terraform.apply(str(self.plan_file), var=None, input=False, skip_plan=True)
        self._check(
            "apply",
            result,
            (0,),
        )
