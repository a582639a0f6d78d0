"""``instrumentor``: bump the tenant model's version with a JSON patch, then run Instrumentor's stages.

The tenant model (JSON) gets an RFC 6902 patch: ``gitlab_version`` for a release, ``prerelease_version``
for an auto-deploy package (refused when ``enable_fips`` is true). The result is validated against a
JSON schema (the bundled minimal one by default) before anything is written, then written atomically
with the previous content kept as ``<model>.previous``. Each configured stage then runs as a command
(no shell; ``{stage}`` and ``{tenant_model}`` in the template), its output streamed into the journal,
with a timeout per stage; the probes gate after each stage. Rollback applies the inverse patch and runs
the stages again.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from zdu.plugins import Step, UpgradeContext, UsageError, Version
from zdu_instrumentor.stages import run_stage
from zdu_instrumentor.tenant_model import (
    DEFAULT_SCHEMA,
    apply_patch_text,
    inverse_patch,
    validate,
    version_field,
    version_patch,
    write_atomically,
)

__all__ = ["InstrumentorConfig", "InstrumentorStrategy"]


def _has_placeholders(_instance: object, _attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value:
        raise ValueError("command must name a program (an argument list, run without a shell)")
    for argument in value:
        try:
            argument.format(stage="", tenant_model="")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"command argument {argument!r}: only {{stage}} and {{tenant_model}} may be used ({error})"
            ) from None


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be above 0, got {value!r}")


@attrs.frozen
class InstrumentorConfig:
    """Options of ``instrumentor``.

    :ivar tenant_model: the tenant model JSON file.
    :ivar command: the command of one stage, an argument list with ``{stage}`` and ``{tenant_model}``.
    :ivar stages: the stages to run, in order.
    :ivar schema: the JSON schema the patched model must satisfy; empty: the bundled minimal one.
    :ivar stage_timeout: seconds a stage may run.
    :ivar timeouts: per-stage timeouts overriding ``stage_timeout``.
    """

    tenant_model: Path
    command: list[str] = attrs.field(validator=_has_placeholders)
    stages: list[str] = attrs.field(factory=lambda: ["prepare", "configure"])
    schema: Path | None = None
    stage_timeout: float = attrs.field(default=3600.0, validator=_positive)
    timeouts: dict[str, float] = attrs.field(factory=dict)


class InstrumentorStrategy:
    """The ``instrumentor`` strategy (see the module's docstring)."""

    def __init__(self, config: InstrumentorConfig) -> None:
        self.config = config
        unknown = sorted(set(config.timeouts) - set(config.stages))
        if unknown:
            raise UsageError(
                f"strategy.timeouts: {', '.join(unknown)} not in strategy.stages {config.stages}"
            )

    @property
    def _previous(self) -> Path:
        return self.config.tenant_model.with_name(self.config.tenant_model.name + ".previous")

    def _read(self) -> tuple[str, dict[str, object]]:
        path = self.config.tenant_model
        try:
            text = path.read_bytes().decode("utf-8")
            model = json.loads(text)
        except FileNotFoundError:
            raise UsageError(f"strategy.tenant_model: {path} does not exist") from None
        except ValueError as error:
            raise UsageError(f"strategy.tenant_model: {path} is not valid JSON: {error}") from None
        except RecursionError:
            raise UsageError(f"strategy.tenant_model: {path} is not valid JSON: nested too deeply") from None
        if not isinstance(model, dict):
            raise UsageError(f"strategy.tenant_model: {path} is not a JSON object")
        return text, model

    def _patched(self, version: Version) -> tuple[str, list[dict[str, object]], str]:
        """The model's text, the patch to ``version`` and the patched text, validated; writes nothing."""
        text, model = self._read()
        validate(model, self.config.schema or DEFAULT_SCHEMA, self.config.tenant_model)
        patch = version_patch(model, version)
        patched = apply_patch_text(text, patch)
        validate(json.loads(patched), self.config.schema or DEFAULT_SCHEMA, self.config.tenant_model)
        return text, patch, patched

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """The patch (validated now, so a bad model is refused in preflight) and the stages."""
        _text, patch, _patched = self._patched(ctx.release.version)
        steps = [Step("rollout", "patch tenant model", json.dumps(patch))]
        steps.extend(Step("rollout", "instrumentor stage", stage) for stage in self.config.stages)
        return steps

    def _run_stages(self, ctx: UpgradeContext, *, gate: bool) -> None:
        for stage in self.config.stages:
            argv = [a.format(stage=stage, tenant_model=self.config.tenant_model) for a in self.config.command]
            timeout = self.config.timeouts.get(stage, self.config.stage_timeout)

            def stream(line: str, stage: str = stage) -> None:
                ctx.event("stage-output", f"{stage}: {line}", stage=stage)

            with ctx.step(f"instrumentor stage {stage}", stage=stage):
                run_stage(stage, argv, timeout, stream)
            if gate:
                ctx.gate(f"instrumentor stage {stage}")

    def rollout(self, ctx: UpgradeContext) -> None:
        """Patch the tenant model (unless already patched), then run every stage, gating after each."""
        version = ctx.release.version
        text, patch, patched = self._patched(version)
        if patched != text:
            with ctx.step("patch tenant model", patch=patch):
                write_atomically(self.config.tenant_model, patched)
        self._run_stages(ctx, gate=True)

    def finalize(self, ctx: UpgradeContext) -> None:
        """Nothing to remove."""

    def rollback(self, ctx: UpgradeContext) -> None:
        """Apply the inverse patch (when the release's patch is in the model) and run the stages again."""
        text, model = self._read()
        field = version_field(ctx.release.version)
        if model.get(field) != str(ctx.release.version) or not self._previous.exists():
            ctx.event("rollback", "the tenant model does not carry the release: nothing to undo")
            return
        previous = json.loads(self._previous.read_bytes())
        inverse = inverse_patch(previous, version_patch(previous, ctx.release.version))
        with ctx.step("apply the inverse patch to the tenant model", patch=inverse):
            write_atomically(self.config.tenant_model, apply_patch_text(text, inverse), keep_previous=False)
        self._run_stages(ctx, gate=False)
