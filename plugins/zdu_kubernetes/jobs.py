"""Migration commands as Kubernetes Jobs from the release's toolbox image (the ``gitlab-rake`` executor).

As GitLab's chart upgrade procedure does, the webservice and sidekiq Deployments are paused while the
Job runs (``spec.paused``: no template change rolls out under a migration), and resumed after it,
sidekiq first.
"""

from __future__ import annotations

import copy
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from zdu.plugins import CommandError, CommandResult, CommandTimeout, Version
from zdu_kubernetes.api import Obj, WaitTimeout
from zdu_kubernetes.config import KubernetesPlatformConfig
from zdu_kubernetes.objects import MANAGED_BY, retag_pod, retag_release

if TYPE_CHECKING:
    from zdu_kubernetes.platform import KubernetesPlatform

__all__ = ["JobCommandExecutor", "migration_job", "toolbox_container"]

log = logging.getLogger("zdu.kubernetes.jobs")

TARGET_LABEL = "zdu.gitlab.com/target"


#: the label of the chart's migrations Jobs (``gitlab-migrations-<revision>-<random>``)
CHART_MIGRATIONS_LABELS = {"app": "migrations"}
#: container fields of the toolbox's kept by the migrations container
_CONTAINER_FIELDS = (
    "envFrom",
    "volumeMounts",
    "resources",
    "securityContext",
    "workingDir",
    "imagePullPolicy",
)
#: pod fields of the toolbox's kept by the migrations Job's pod
_POD_FIELDS = (
    "volumes",
    "serviceAccountName",
    "automountServiceAccountToken",
    "securityContext",
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "affinity",
    "priorityClassName",
    "enableServiceLinks",
)


def toolbox_container(template: Obj) -> Obj:
    """The toolbox container of a pod template: ``toolbox`` or ``migrations`` by name, else the first."""
    containers: list[Obj] = (template.get("spec") or {}).get("containers") or [{}]
    for container in containers:
        if container.get("name") in ("toolbox", "migrations"):
            return container
    return containers[0]


def migration_job(
    name: str,
    target: str,
    image: str,
    argv: Sequence[str],
    env: Mapping[str, str | None],
    template: Obj | None,
    version: Version,
    config: KubernetesPlatformConfig,
) -> Obj:
    """The Job that runs ``argv`` once, built as the GitLab chart builds its migrations Job.

    From the toolbox's pod ``template``: its init containers (the chart's ``certificates`` and
    ``configure``, which put the configuration and secrets in place), every one whose image names a
    GitLab version retagged to ``version`` (flavour kept); its volumes, service account, security
    context, pull secrets and scheduling; and the toolbox container's environment, mounts and
    resources. The container runs ``image`` with ``argv`` as its ``args``: the image's own entrypoint
    runs, as in the chart's Job. ``env`` changes the container's environment: a string sets a
    variable, ``None`` removes it.
    """
    source_template: Obj = copy.deepcopy(template or {})
    pod: Obj = source_template.get("spec") or {}
    source = toolbox_container(source_template)
    variables = [v for v in source.get("env") or [] if v.get("name") not in env]
    variables += [{"name": key, "value": value} for key, value in sorted(env.items()) if value is not None]
    container: Obj = {
        "name": "migrations",
        "image": image,
        "args": list(argv),
        **({"env": variables} if variables else {}),
    }
    for key in _CONTAINER_FIELDS:
        if source.get(key):
            container[key] = copy.deepcopy(source[key])
    pod_spec: Obj = {key: pod[key] for key in _POD_FIELDS if pod.get(key) is not None and pod[key] != []}
    init = pod.get("initContainers") or []
    if init:
        retag_pod({"initContainers": init}, version, config)
        pod_spec["initContainers"] = init
    pod_spec["restartPolicy"] = "Never"
    pod_spec["containers"] = [container]
    labels = {**MANAGED_BY, TARGET_LABEL: target}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": config.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": config.job_ttl,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _condition(job: Obj, kind: str) -> Obj | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            found: Obj = condition
            return found
    return None


class JobCommandExecutor:
    """Runs a command as a Job of the release's toolbox image; see :class:`zdu.migrations.CommandExecutor`.

    The output is the pod's log, passed to ``on_output`` line by line once the Job has ended.
    """

    def __init__(self, platform: KubernetesPlatform) -> None:
        self.platform = platform

    def _version(self) -> Version:
        return self.platform.env.release or self.platform.env.target.version

    def _toolbox(self) -> tuple[Obj | None, str]:
        """The pod template the Job is built from, and where it comes from (for errors)."""
        api, config = self.platform.api, self.platform.config
        toolbox = api.get("Deployment", config.toolbox_deployment)
        if toolbox is not None:
            return toolbox["spec"]["template"], f"Deployment {config.namespace}/{config.toolbox_deployment}"
        jobs = [
            job
            for job in api.list("Job", CHART_MIGRATIONS_LABELS)
            if (job["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") != "zdu"
        ]
        if jobs:
            newest = max(jobs, key=lambda job: str(job["metadata"].get("creationTimestamp") or ""))
            return newest["spec"]["template"], f"Job {config.namespace}/{newest['metadata']['name']}"
        return None, ""

    def _image(self, template: Obj | None, where: str) -> str:
        """``toolbox_image`` when set, else the toolbox's image retagged to the release (flavour kept)."""
        config = self.platform.config
        version = self._version()
        if config.toolbox_image:
            return config.toolbox_image.format(version=version)
        if template is None:
            raise CommandError(
                f"no toolbox Deployment {config.namespace}/{config.toolbox_deployment} and no migrations "
                "Job of the chart (label app=migrations) to take the migrations image from: set "
                "platform.toolbox_deployment or platform.toolbox_image"
            )
        image = str(toolbox_container(template).get("image") or "")
        retagged = retag_release(image, version, config)
        if retagged is None:
            raise CommandError(
                f"the toolbox image {image!r} of {where} has no tag naming a GitLab version under "
                f"platform.image_tag {config.image_tag!r}: set platform.toolbox_image"
            )
        return retagged

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str | None],
        timeout: float,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Pause webservice and sidekiq, run ``argv`` in a Job to its end, resume sidekiq then webservice.

        In a dry run (``zdu plan``), the pauses and the Job are only checked by the API server: the
        command does not run, and its result is a success with no output.
        """
        if not argv:
            raise CommandError("no command to run: the command is empty")
        job = self._job(argv, env)  # a bad image is refused before anything is paused
        paused = self._pause()
        try:
            return self._run_job(job, argv, timeout, on_output)
        finally:
            self._resume(paused)

    def _job(self, argv: Sequence[str], env: Mapping[str, str | None]) -> Obj:
        template, where = self._toolbox()
        return migration_job(
            f"zdu-migrations-{secrets.token_hex(4)}",
            self.platform.env.target.name,
            self._image(template, where),
            argv,
            env,
            template,
            self._version(),
            self.platform.config,
        )

    def _pausable(self) -> list[str]:
        config = self.platform.config
        webservice = [name for name, _version, _obj in self.platform.group_deployments()]
        sidekiq = [name for name in config.sidekiq_deployments if self.platform.api.get("Deployment", name)]
        return webservice + sidekiq

    def _pause(self) -> list[str]:
        paused = []
        for name in self._pausable():

            def pause(obj: Obj) -> bool:
                if obj["spec"].get("paused"):
                    return False
                obj["spec"]["paused"] = True
                return True

            before = self.platform.api.get("Deployment", name)
            if before is not None and not before["spec"].get("paused"):
                self.platform.api.update("Deployment", name, pause)
                paused.append(name)
        if paused:
            log.info("paused %s while migrations run", ", ".join(paused))
        return paused

    def _resume(self, paused: list[str]) -> None:
        sidekiq = set(self.platform.config.sidekiq_deployments)
        order = [n for n in paused if n in sidekiq] + [n for n in paused if n not in sidekiq]
        for name in order:

            def resume(obj: Obj) -> bool:
                if not obj["spec"].get("paused"):
                    return False
                obj["spec"]["paused"] = False
                return True

            self.platform.api.update("Deployment", name, resume)
        if order:
            log.info("resumed %s", ", ".join(order))

    def _run_job(
        self, job: Obj, argv: Sequence[str], timeout: float, on_output: Callable[[str], None] | None
    ) -> CommandResult:
        api = self.platform.api
        name = job["metadata"]["name"]
        api.create(job)
        if api.dry_run:
            # a plan: the API server checked the Job (validation, admission) and stored nothing
            log.warning("job %s (%s) was checked by the API server, not run: a dry run", name, " ".join(argv))
            return CommandResult(returncode=0, output="")
        log.info("job %s runs %s", name, " ".join(argv))

        def ended(obj: Obj | None) -> bool:
            if obj is None:
                raise CommandError(f"job {name} was deleted before it ended")
            return _condition(obj, "Complete") is not None or _condition(obj, "Failed") is not None

        try:
            finished = api.wait("Job", name, ended, timeout, f"job {name} ({' '.join(argv)}) to end")
        except WaitTimeout:
            output = self._output(name, None)
            api.delete("Job", name)
            raise CommandTimeout(
                f"{' '.join(argv)} (job {name}) did not finish within {timeout:g}s and was deleted",
                output=output,
            ) from None
        assert finished is not None
        code = self._exit_code(name, finished)
        output = self._output(name, on_output)
        failed = _condition(finished, "Failed")
        if failed is not None and code == 0:
            code = 1
            reason = f"job {name} failed: {failed.get('reason', '')} {failed.get('message', '')}".strip()
            output = f"{output}\n{reason}" if output else reason
            if on_output is not None:
                on_output(reason)
        return CommandResult(returncode=code, output=output)

    def _pods(self, name: str) -> list[Obj]:
        return self.platform.api.list("Pod", {"job-name": name})

    def _exit_code(self, name: str, job: Obj) -> int:
        for pod in self._pods(name):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                terminated = (status.get("state") or {}).get("terminated")
                if terminated is not None:
                    return int(terminated.get("exitCode", 1))
        return 0 if _condition(job, "Complete") is not None else 1

    def _output(self, name: str, on_output: Callable[[str], None] | None) -> str:
        lines: list[str] = []
        for pod in self._pods(name):
            lines += self.platform.api.log(pod["metadata"]["name"]).splitlines()
        if on_output is not None:
            for line in lines:
                on_output(line)
        return "\n".join(lines)
