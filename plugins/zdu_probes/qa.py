"""The ``qa`` probe: a smoke-test command run against the target at chosen gates.

GitLab Dedicated runs GitLab QA's smoke suite against a tenant while it is upgraded; this probe does
the same with any command. At each chosen gate it runs the command (no shell; ``{url}``,
``{version}``, ``{from_version}`` and ``{target}`` substituted in its arguments, and exported as
``ZDU_URL``, ``ZDU_VERSION``, ``ZDU_FROM_VERSION``, ``ZDU_TARGET``) and waits for it: the gate waits
for the verdict, as a person would. The exit code is the verdict (0 passes), a command that runs past
``timeout`` is killed and fails. The command's output (its last ``output_chars`` characters, every
configured secret replaced by ``***``) goes to the journal with the exit code.

Gates (``at``):

* ``first-new``: the first gate of the ``rollout`` phase, after the strategy's first step that
  changed what serves (the first new instance takes traffic, for ``rolling``);
* ``before-finalize``: the end of ``verify``, when only the release serves, before the old version
  is removed;
* ``every-gate``: every gate the probe is due at (as other probes).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import attrs

from zdu.plugins import REDACTED, Measurement, MeasurementStatus, ProbeContext, Secret, Verdict, VerdictStatus

__all__ = ["GATES", "QaProbe", "QaProbeConfig"]

#: Where the command can run.
GATES = ("first-new", "before-finalize", "every-gate")


def _command(_instance: object, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
        raise ValueError(
            f"{attribute.name} must be a non-empty list of arguments such as ['bin/qa', '{{url}}'] "
            f"(got {value!r})"
        )


def _gates(_instance: object, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    if not isinstance(value, list) or not value or any(g not in GATES for g in value):
        raise ValueError(f"{attribute.name} must be a non-empty list of {', '.join(GATES)} (got {value!r})")


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number greater than 0 (got {value!r})")


@attrs.frozen
class QaProbeConfig:
    """Configuration of the ``qa`` probe (``[[probes]]`` with ``name = "qa"``).

    :ivar command: the smoke test, a list of arguments (no shell).
    :ivar at: the gates it runs at: ``first-new``, ``before-finalize``, ``every-gate``.
    :ivar timeout: seconds one run may take; past that it is killed and fails.
    :ivar env: added to the command's environment; the values are secrets (redacted in its output).
    :ivar output_chars: how much of the end of its output the journal keeps.
    """

    command: list[str] = attrs.field(validator=_command)
    at: list[str] = attrs.field(factory=lambda: ["first-new", "before-finalize"], validator=_gates)
    timeout: float = attrs.field(default=300.0, validator=_positive)
    env: dict[str, Secret] = attrs.field(factory=dict)
    output_chars: int = attrs.field(default=4000, validator=attrs.validators.ge(0))


class QaProbe:
    """Runs the smoke-test command at the chosen gates; see the module's documentation."""

    def __init__(self, config: QaProbeConfig, *, name: str = "qa") -> None:
        self._config = config
        self._name = name
        self._ctx: ProbeContext | None = None
        self._pending: str | None = None
        self._rollout_seen = False
        self._since = 0.0
        self._runs: list[Measurement] = []
        self._verdict: Verdict | None = None

    @property
    def name(self) -> str:
        """``qa``."""
        return self._name

    def start(self, ctx: ProbeContext) -> None:
        """Remember where the target is; the command runs at the chosen gates."""
        self._ctx = ctx
        self._since = time.time()

    def at_gate(self, phase: str, step: str) -> bool:
        """Note whether this gate is one the command runs at (then it must be measured now)."""
        chosen = self._config.at
        gate = None
        if phase == "rollout" and not self._rollout_seen:
            self._rollout_seen = True
            gate = "first-new" if "first-new" in chosen else None
        if gate is None and phase == "verify" and step == "end of verify" and "before-finalize" in chosen:
            gate = "before-finalize"
        if gate is None and "every-gate" in chosen:
            gate = "every-gate"
        self._pending = gate
        return gate is not None and gate != "every-gate"

    def _substitutions(self) -> dict[str, str]:
        ctx = self._ctx
        if ctx is None:
            return {"url": "", "version": "", "from_version": "", "target": ""}
        return {
            "url": ctx.url,
            "version": str(ctx.release.version),
            "from_version": str(ctx.from_version),
            "target": ctx.target.name,
        }

    def _redact(self, text: str) -> str:
        for secret in self._config.env.values():
            value = secret.reveal()
            if value:
                text = text.replace(value, REDACTED)
        return text

    def run(self, gate: str) -> Measurement:
        """Run the command once now, for ``gate``, and judge it by its exit code."""
        values = self._substitutions()
        argv = [argument.format_map(values) for argument in self._config.command]
        env = {
            **os.environ,
            **{f"ZDU_{key.upper()}": value for key, value in values.items()},
            **{key: secret.reveal() for key, secret in self._config.env.items()},
        }
        began, started_at = time.monotonic(), self._since
        try:
            done = subprocess.run(
                argv,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self._config.timeout,
                check=False,
            )
            output, code, reason = done.stdout, done.returncode, ""
            if code != 0:
                reason = f"{argv[0]} exited with {code} at {gate}"
        except subprocess.TimeoutExpired as expired:
            output, code = expired.output or b"", None
            reason = f"{argv[0]} ran past its timeout of {self._config.timeout:g} s at {gate}: killed"
        except OSError as error:
            output, code, reason = b"", None, f"{argv[0]} could not run at {gate}: {error}"
        duration = time.monotonic() - began
        self._since = time.time()
        text = self._redact(output.decode("utf-8", "replace"))
        tail = text[-self._config.output_chars :] if self._config.output_chars else ""
        decision = "passed" if code == 0 else "failed"
        evaluation: Mapping[str, Any] = {
            "check": f"qa at {gate}",
            "query": " ".join(self._redact(a) for a in argv),
            "value": code,
            "threshold": "exit code 0",
            "decision": decision,
            "reason": reason,
            "duration_s": round(duration, 3),
            "output": tail,
        }
        measurement = Measurement(
            probe=self._name,
            status=MeasurementStatus.SUCCESSFUL if code == 0 else MeasurementStatus.FAILED,
            values={"exit_code": float(code if code is not None else -1), "duration_s": round(duration, 3)},
            reasons=(reason,) if reason else (),
            started_at=started_at,
            finished_at=self._since,
            evaluations=(evaluation,),
        )
        self._runs.append(measurement)
        return measurement

    def measure(self) -> Measurement:
        """Run the command when this gate is a chosen one; otherwise report nothing (successful)."""
        gate, self._pending = self._pending, None
        if gate is None:
            return Measurement(probe=self._name, status=MeasurementStatus.SUCCESSFUL)
        return self.run(gate)

    def stop(self) -> Verdict:
        """Failed when a run failed, passed when every run passed, inconclusive when none ran."""
        if self._verdict is None:
            failed = [m for m in self._runs if m.status is MeasurementStatus.FAILED]
            status = (
                VerdictStatus.FAILED
                if failed
                else VerdictStatus.PASSED
                if self._runs
                else VerdictStatus.INCONCLUSIVE
            )
            reasons = tuple(r for m in failed for r in m.reasons) or (
                () if self._runs else ("no chosen gate was reached: the command never ran",)
            )
            self._verdict = Verdict(
                probe=self._name,
                status=status,
                values={"runs": len(self._runs), "failed_runs": len(failed)},
                reasons=reasons,
            )
        return self._verdict
