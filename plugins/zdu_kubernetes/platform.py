"""The kubernetes platform: webservice Deployments by version behind a Service and an ingress-nginx Ingress.

How the Platform protocol maps onto Kubernetes (docs/kubernetes.md says why):

* a **group** is a Deployment of one version: the chart's webservice Deployment (its version is the
  target's until zdu annotates it) or a clone of it named ``<deployment>-<group>``, labelled
  ``zdu.gitlab.com/group`` (selector and pod template) and with every container's image retagged;
* **scale** sets a group Deployment's ``spec.replicas`` (creating the clone when missing) and follows
  the rollout through ``observedGeneration``, ``updatedReplicas``, ``availableReplicas`` and the
  ``Progressing`` condition (``ProgressDeadlineExceeded`` fails it at once); draining is Kubernetes'
  own (endpoints removal, ``preStop``, ``terminationGracePeriodSeconds``);
* **weights** are the Service selector: one group taking traffic pins the selector to its label, several
  leave the chart's selector (they share traffic by their pod counts);
* **remove_group** deletes a clone, and scales the chart's own Deployment to 0 (marked removed);
* when one version is left serving, zdu **hands the cell back** to the chart: the sidekiq Deployments
  are rolled to that version (before any post-deployment migration), the chart's Deployment is rolled
  to it and takes the clone's replicas, the Service gets the chart's selector back, the clone goes, and
  the chart's HorizontalPodAutoscaler (held still while zdu changes replicas) scales the chart's
  Deployment again. A later ``helm upgrade`` finds the objects it manages serving.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from zdu.plugins import (
    WEIGHTS_ON_OFF,
    CanaryRoute,
    Instance,
    InstanceGroup,
    PlatformEnv,
    PlatformError,
    PreflightError,
    ReadinessTimeout,
    Version,
    routed_versions,
)
from zdu_kubernetes.api import Api, ClusterApi, Obj, OfflineApi, WaitTimeout, matches
from zdu_kubernetes.config import KubernetesPlatformConfig
from zdu_kubernetes.jobs import JobCommandExecutor
from zdu_kubernetes.lease import LeaseLock
from zdu_kubernetes.objects import (
    AFFINITY_ANNOTATIONS,
    ASSET_VERSIONS_ANNOTATION,
    BASE_LABEL,
    BASE_SELECTOR_ANNOTATION,
    CANARY_ROUTE_ANNOTATION,
    CANARY_WEIGHT,
    GROUP_LABEL,
    HPA_BEHAVIOR_ANNOTATION,
    REMOVED_ANNOTATION,
    SERVICE_UPSTREAM,
    VERSION_ANNOTATION,
    affinity_annotations,
    assets_deployment,
    assets_ingress,
    assets_name,
    assets_service,
    base_selector,
    canary_ingress,
    clone_name,
    group_deployment,
    group_name,
    image_version,
    ingress_hosts,
    preview_ingress,
    preview_service,
    retag_pod,
    rolling_update,
)

__all__ = ["KubernetesAssetStore", "KubernetesPlatform", "KubernetesRouter", "client_configuration"]

log = logging.getLogger("zdu.kubernetes")

_BAD_WAITING = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"}
)


def client_configuration(config: KubernetesPlatformConfig) -> Any:
    """A ``kubernetes.client.Configuration``: ``api_url``, else the kubeconfig, else in-cluster."""
    from kubernetes import client  # noqa: PLC0415
    from kubernetes import config as kube_config  # noqa: PLC0415

    if config.api_url:
        return client.Configuration(host=config.api_url)
    configuration = client.Configuration()
    try:
        kube_config.load_kube_config(context=config.context or None, client_configuration=configuration)
    except (kube_config.ConfigException, OSError) as kube_error:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except kube_config.ConfigException:
            raise PlatformError(
                "no Kubernetes credentials: the kubeconfig could not be loaded "
                f"({type(kube_error).__name__}) "
                "and zdu does not run in a pod; set KUBECONFIG or platform.api_url"
            ) from None
    return configuration


def _ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _rolled_out(name: str) -> Any:
    def done(obj: Obj | None) -> bool:
        if obj is None:
            raise PlatformError(f"Deployment {name} was deleted during its rollout")
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if int(status.get("observedGeneration") or 0) < int(obj["metadata"].get("generation") or 0):
            return False
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "Progressing"
                and condition.get("reason") == "ProgressDeadlineExceeded"
            ):
                raise ReadinessTimeout(
                    f"Deployment {name} exceeded its progress deadline "
                    f"({spec.get('progressDeadlineSeconds', 600)}s): {condition.get('message', '')}"
                )
        want = int(spec.get("replicas", 1))
        return all(
            int(status.get(key) or 0) == want for key in ("replicas", "updatedReplicas", "availableReplicas")
        )

    return done


class KubernetesPlatform:
    """The :class:`zdu.platform.Platform` of a GitLab chart deployment (see the module docstring).

    :param config: where the deployment is and how to act on it.
    :param env: the target; with ``offline_snapshot``, the platform works on that snapshot and records
        every object it would send (``zdu plan --offline``).
    :param api: the API to use (tests pass one); default: the cluster, or the snapshot.
    """

    def __init__(self, config: KubernetesPlatformConfig, env: PlatformEnv, api: Api | None = None) -> None:
        self.config = config
        self.env = env
        if api is None:
            if env.offline_snapshot is not None:
                api = OfflineApi(env.offline_snapshot, config.namespace)
            else:
                api = ClusterApi(
                    client_configuration(config), config.namespace, attempts=config.request_attempts
                )
        self.api: Api = api
        self._router = KubernetesRouter(self)
        self._assets = KubernetesAssetStore(self)
        self._executor = JobCommandExecutor(self)
        self._lease: LeaseLock | None = None
        self._lock_listeners: list[Callable[[str], None]] = []
        self._listeners_guard = threading.Lock()

    @property
    def router(self) -> KubernetesRouter:
        """The Service selector and the ingress-nginx Ingress."""
        return self._router

    @property
    def assets(self) -> KubernetesAssetStore:
        """The assets shim: a Deployment holding several versions' assets."""
        return self._assets

    @property
    def command_executor(self) -> JobCommandExecutor:
        """Migration commands run as Jobs of the release's toolbox image."""
        return self._executor

    @property
    def url(self) -> str:
        """``platform.url``, else ``https://`` and the Ingress's first host."""
        return self._router.url

    def serving_versions(self) -> list[Version]:
        """The versions of the groups the Service selects with a ready pod."""
        return routed_versions(self)

    def recorded_changes(self) -> list[Obj]:
        """What an offline platform would have sent, in order (empty against a cluster)."""
        return list(self.api.changes) if isinstance(self.api, OfflineApi) else []

    @contextlib.contextmanager
    def dry_run(self) -> Iterator[None]:
        """Within the block every create, replace and delete is a server dry run (``dryRun=All``).

        The API server validates and admits each (an error names the field or the webhook) and
        stores nothing: ``zdu plan`` against the cluster changes nothing. Reads see the cluster.
        """
        before = self.api.dry_run
        self.api.dry_run = True
        try:
            yield
        finally:
            self.api.dry_run = before

    @property
    def lease(self) -> LeaseLock:
        """The Lease ``zdu-<target>`` that is the target's lock (one per platform: it keeps what it saw)."""
        if self._lease is None:
            self._lease = LeaseLock(
                self.api,
                f"zdu-{self.env.target.name}"[:63].rstrip("-"),
                self.env.target.name,
                self.config.lease_duration,
                on_lost=self._lock_lost,
                observations=self.env.state_dir / "lease-observed.json",
            )
        return self._lease

    @contextlib.contextmanager
    def hold_lock(self, holder: str) -> Iterator[None]:
        """Hold the Lease ``zdu-<target>`` in the namespace, renewed, for the upgrade's length.

        Another holder's Lease is taken over only once this machine has seen it unchanged for its
        duration (:mod:`zdu_kubernetes.lease`); before that, :class:`~zdu.errors.TargetBusy`.
        """
        with self.lease.held(holder):
            try:
                yield
            finally:
                with self._listeners_guard:
                    self._lock_listeners.clear()

    def on_lock_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` once if the Lease held now is lost (at once if it is already)."""
        with self._listeners_guard:
            lost = self._lease.lost if self._lease is not None else None
            if lost is None:
                self._lock_listeners.append(callback)
        if lost is not None:
            callback(lost)

    def _lock_lost(self, reason: str) -> None:
        with self._listeners_guard:
            listeners = list(self._lock_listeners)
            self._lock_listeners.clear()
        for listener in listeners:
            listener(reason)

    def close(self) -> None:
        """Close the client's connections."""
        close = getattr(self.api, "close", None)
        if close is not None:
            close()

    # -- groups ------------------------------------------------------------------------------------

    def group_name(self, version: Version) -> str:
        """``v16-6-0`` for 16.6.0."""
        return group_name(version)

    def _base_version(self, base: Obj) -> Version:
        """The chart Deployment's version: its image's tag, else zdu's annotation, else the target's.

        The image is what runs (``helm upgrade`` changes it without touching zdu's annotation).
        """
        containers = ((base["spec"].get("template") or {}).get("spec") or {}).get("containers") or []
        for container in containers:
            version = image_version(str(container.get("image") or ""), self.config)
            if version is not None:
                return version
        annotations = base["metadata"].get("annotations") or {}
        text = annotations.get(VERSION_ANNOTATION)
        return Version.parse(text) if text else self.env.target.version

    def group_deployments(self, *, removed: bool = False) -> list[tuple[str, Version, Obj]]:
        """(Deployment name, version, object) of every group, the chart's own first."""
        found: list[tuple[str, Version, Obj]] = []
        base = self.api.get("Deployment", self.config.deployment)
        if base is not None:
            gone = (base["metadata"].get("annotations") or {}).get(REMOVED_ANNOTATION) == "true"
            if removed or not gone or int(base["spec"].get("replicas", 1)) > 0:
                found.append((self.config.deployment, self._base_version(base), base))
        for clone in self.api.list("Deployment", {BASE_LABEL: self.config.deployment}):
            labels = clone["metadata"].get("labels") or {}
            version = (clone["metadata"].get("annotations") or {}).get(VERSION_ANNOTATION)
            if GROUP_LABEL in labels and version:
                found.append((clone["metadata"]["name"], Version.parse(version), clone))
        return found

    def _deployment_of(self, group: str) -> tuple[str, Version, Obj] | None:
        for name, version, obj in self.group_deployments(removed=True):
            if group_name(version) == group:
                return name, version, obj
        return None

    def _pods(self, name: str, group: str, deployment: Obj) -> list[Obj]:
        selector = dict((deployment["spec"].get("selector") or {}).get("matchLabels") or {})
        pods = []
        for pod in self.api.list("Pod", selector):
            labels = pod["metadata"].get("labels") or {}
            if labels.get(GROUP_LABEL, group) != group or pod["metadata"].get("deletionTimestamp"):
                continue
            pods.append(pod)
        return pods

    def _group(self, name: str, version: Version, deployment: Obj, selector: dict[str, str]) -> InstanceGroup:
        group = group_name(version)
        instances = []
        for pod in self._pods(name, group, deployment):
            ready = _ready(pod)
            instances.append(
                Instance(
                    id=pod["metadata"]["name"],
                    group=group,
                    version=str(version),
                    address=str((pod.get("status") or {}).get("podIP") or ""),
                    ready=ready,
                    alive=(pod.get("status") or {}).get("phase") == "Running",
                    routed=ready and matches(pod["metadata"].get("labels"), selector),
                )
            )
        return InstanceGroup(name=group, version=version, instances=tuple(instances))

    def _selector(self) -> dict[str, str]:
        service = self.api.get("Service", self.config.service)
        if service is None:
            raise PlatformError(f"Service {self.config.namespace}/{self.config.service} does not exist")
        return dict(service["spec"].get("selector") or {})

    def groups(self) -> list[InstanceGroup]:
        """Every group with its pods, oldest version first."""
        selector = self._selector()
        groups = [
            self._group(name, version, obj, selector) for name, version, obj in self.group_deployments()
        ]
        return sorted(groups, key=lambda g: (g.version, g.name))

    def _template(self) -> Obj:
        base = self.api.get("Deployment", self.config.deployment)
        if base is not None:
            return base
        clones = self.group_deployments()
        if not clones:
            raise PlatformError(
                f"Deployment {self.config.namespace}/{self.config.deployment} does not exist: "
                "nothing to clone"
            )
        return clones[-1][2]

    def scale(self, group: str, version: Version, replicas: int) -> InstanceGroup:
        """Make ``group``'s Deployment have ``replicas`` available pods (creating it as a clone)."""
        if replicas < 0:
            raise PlatformError(f"cannot scale {group} to {replicas} replicas")
        self._hold_autoscaler()
        found = self._deployment_of(group)
        if found is None:
            if replicas == 0:
                return InstanceGroup(name=group, version=version)
            body = group_deployment(self._template(), group, version, replicas, self.config)
            name = body["metadata"]["name"]
            log.info("creating Deployment %s: %d replicas of %s", name, replicas, version)
            self.api.create(body)
        else:
            name, known, _ = found
            if known != version:
                raise PlatformError(f"group {group} runs version {known}, not {version}")

            def resize(obj: Obj) -> bool:
                annotations = obj["metadata"].setdefault("annotations", {})
                changed = annotations.pop(REMOVED_ANNOTATION, None) is not None and replicas > 0
                if int(obj["spec"].get("replicas", 1)) != replicas:
                    obj["spec"]["replicas"] = replicas
                    changed = True
                return changed

            log.info("scaling Deployment %s to %d", name, replicas)
            self.api.update("Deployment", name, resize)
        self._wait_rolled_out(name, f"Deployment {name} ({group}) to have {replicas} available replicas")
        refreshed = self._deployment_of(group)
        assert refreshed is not None
        return self._group(refreshed[0], version, refreshed[2], self._selector())

    def _wait_rolled_out(self, name: str, what: str) -> None:
        try:
            self.api.wait("Deployment", name, _rolled_out(name), self.config.rollout_timeout, what)
        except (WaitTimeout, ReadinessTimeout) as error:
            self._stop_unready(name)
            raise ReadinessTimeout(str(error)) from None

    def _stop_unready(self, name: str) -> None:
        """After a failed scale-up: keep only the pods that are available (as the protocol asks)."""
        current = self.api.get("Deployment", name)
        if current is None:
            return
        available = int((current.get("status") or {}).get("availableReplicas") or 0)

        def shrink(obj: Obj) -> bool:
            if int(obj["spec"].get("replicas", 1)) <= available:
                return False
            obj["spec"]["replicas"] = available
            return True

        log.warning("scaling Deployment %s back to its %d available replicas", name, available)
        self.api.update("Deployment", name, shrink)

    def remove_group(self, group: str) -> None:
        """Scale ``group``'s Deployment to 0 (Kubernetes drains the pods); delete it when zdu made it."""
        found = self._deployment_of(group)
        if found is None:
            return
        name = found[0]

        def to_zero(obj: Obj) -> bool:
            annotations = obj["metadata"].setdefault("annotations", {})
            if int(obj["spec"].get("replicas", 1)) == 0 and annotations.get(REMOVED_ANNOTATION) == "true":
                return False
            obj["spec"]["replicas"] = 0
            annotations[REMOVED_ANNOTATION] = "true"
            return True

        self.api.update("Deployment", name, to_zero)
        self._wait_rolled_out(name, f"Deployment {name} ({group}) to have no pods")
        if name != self.config.deployment:
            self.api.delete("Deployment", name)
        self._router.forget_preview(group)
        log.info("group %s removed", group)
        self._hand_back()

    # -- handing the cell back to the chart ----------------------------------------------------------

    def _hold_autoscaler(self) -> None:
        """Stop the chart's HPA from changing replicas while zdu does (``selectPolicy: Disabled``).

        Its own ``behavior`` is kept in an annotation and restored by :meth:`_release_autoscaler`.
        """

        def hold(hpa: Obj) -> bool:
            annotations = hpa["metadata"].setdefault("annotations", {})
            if HPA_BEHAVIOR_ANNOTATION in annotations:
                return False
            behavior = hpa["spec"].get("behavior")
            annotations[HPA_BEHAVIOR_ANNOTATION] = json.dumps(behavior, sort_keys=True)
            held = dict(behavior or {})
            for direction in ("scaleUp", "scaleDown"):
                held[direction] = {**(held.get(direction) or {}), "selectPolicy": "Disabled"}
            hpa["spec"]["behavior"] = held
            log.info("HorizontalPodAutoscaler %s held while zdu changes replicas", self.config.hpa)
            return True

        self.api.update("HorizontalPodAutoscaler", self.config.hpa, hold)

    def _release_autoscaler(self, target: str) -> None:
        """Give the chart's HPA its own behaviour back, scaling ``target``."""

        def release(hpa: Obj) -> bool:
            annotations = hpa["metadata"].setdefault("annotations", {})
            ref = hpa["spec"].setdefault("scaleTargetRef", {})
            if HPA_BEHAVIOR_ANNOTATION not in annotations and ref.get("name") == target:
                return False
            if HPA_BEHAVIOR_ANNOTATION in annotations:
                behavior = json.loads(annotations.pop(HPA_BEHAVIOR_ANNOTATION))
                if behavior is None:
                    hpa["spec"].pop("behavior", None)
                else:
                    hpa["spec"]["behavior"] = behavior
            ref.update({"apiVersion": "apps/v1", "kind": "Deployment", "name": target})
            log.info("HorizontalPodAutoscaler %s scales %s again", self.config.hpa, target)
            return True

        self.api.update("HorizontalPodAutoscaler", self.config.hpa, release)

    def _roll_sidekiq(self, version: Version) -> None:
        """Roll every sidekiq Deployment to ``version`` (a native rolling update), followed to its end."""
        for name in self.config.sidekiq_deployments:

            def retag(obj: Obj) -> bool:
                if not retag_pod(obj["spec"]["template"]["spec"], version, self.config):
                    return False
                obj["metadata"].setdefault("annotations", {})[VERSION_ANNOTATION] = str(version)
                return True

            if self.api.update("Deployment", name, retag) is None:
                continue
            self._wait_rolled_out(name, f"Deployment {name} (sidekiq) to run {version}")

    def _hand_back(self) -> None:
        """Once one version is left, give the cell back to the chart in that version (module docstring)."""
        serving = [
            (name, version, obj)
            for name, version, obj in self.group_deployments()
            if int(obj["spec"].get("replicas", 1)) > 0
        ]
        if len(serving) != 1:
            return
        name, version, clone = serving[0]
        self._roll_sidekiq(version)
        if name != self.config.deployment and self.api.get("Deployment", self.config.deployment):
            replicas = int(clone["spec"].get("replicas", 1))
            log.info("handing %s back to %s (%s)", name, self.config.deployment, version)

            def take_over(base: Obj) -> bool:
                annotations = base["metadata"].setdefault("annotations", {})
                annotations[VERSION_ANNOTATION] = str(version)
                annotations.pop(REMOVED_ANNOTATION, None)
                template = base["spec"]["template"]
                # the chart's own pod labels: the Service's chart selector picks these pods
                (template.get("metadata") or {}).get("labels", {}).pop(GROUP_LABEL, None)
                retag_pod(template["spec"], version, self.config)
                base["spec"]["replicas"] = replicas
                base["spec"]["strategy"] = rolling_update(self.config)
                return True

            self.api.update("Deployment", self.config.deployment, take_over)
            self._wait_rolled_out(
                self.config.deployment, f"Deployment {self.config.deployment} to run {version}"
            )
            self._router.restore_selector()

            def to_zero(obj: Obj) -> bool:
                obj["spec"]["replicas"] = 0
                return True

            self.api.update("Deployment", name, to_zero)
            self._wait_rolled_out(name, f"Deployment {name} to have no pods")
            self.api.delete("Deployment", name)
        elif name == self.config.deployment:
            self._router.restore_selector()
        self._release_autoscaler(self.config.deployment)

    def adopt_base(self) -> None:
        """Label the chart Deployment's pod template with its group, so a Service can select it alone.

        A template change: a native rolling update with GitLab's zero-downtime settings, followed to
        its end. Done once, the first time a selector must tell the chart's pods from a clone's.
        """
        base = self.api.get("Deployment", self.config.deployment)
        if base is None:
            return
        version = self._base_version(base)
        group = group_name(version)
        labels = (base["spec"]["template"].get("metadata") or {}).get("labels") or {}
        if labels.get(GROUP_LABEL) == group:
            return

        def label(obj: Obj) -> bool:
            obj["metadata"].setdefault("annotations", {})[VERSION_ANNOTATION] = str(version)
            obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})[GROUP_LABEL] = group
            obj["spec"]["strategy"] = rolling_update(self.config)
            return True

        log.info(
            "labelling the pod template of %s with group %s (a rolling update)", self.config.deployment, group
        )
        self.api.update("Deployment", self.config.deployment, label)
        self._wait_rolled_out(
            self.config.deployment, f"Deployment {self.config.deployment} to roll out its label"
        )

    def check_health(self) -> list[str]:
        """Pods that fail (crash loops, image pulls) and Deployments past their progress deadline."""
        problems = []
        for name, version, obj in self.group_deployments():
            for condition in (obj.get("status") or {}).get("conditions") or []:
                if condition.get("reason") == "ProgressDeadlineExceeded":
                    problems.append(f"Deployment {name} ({version}) exceeded its progress deadline")
            for pod in self._pods(name, group_name(version), obj):
                status = pod.get("status") or {}
                if status.get("phase") == "Failed":
                    problems.append(f"pod {pod['metadata']['name']} ({version}) failed")
                for container in status.get("containerStatuses") or []:
                    reason = ((container.get("state") or {}).get("waiting") or {}).get("reason")
                    if reason in _BAD_WAITING:
                        problems.append(
                            f"pod {pod['metadata']['name']} ({version}) container "
                            f"{container.get('name')}: {reason}"
                        )
        return problems


class KubernetesRouter:
    """The Service selector (weights) and the ingress-nginx Ingress (affinity, /assets, previews)."""

    def __init__(self, platform: KubernetesPlatform) -> None:
        self.platform = platform
        self.config = platform.config
        self.api = platform.api

    @property
    def url(self) -> str:
        """``platform.url``, else ``https://`` and the Ingress's first host."""
        if self.config.url:
            return self.config.url
        ingress = self._ingress()
        host = next((h for h in ingress_hosts(ingress) if h), None)
        if host is None:
            raise PlatformError(f"Ingress {self.config.ingress} has no host: set platform.url")
        return f"https://{host}"

    def _ingress(self) -> Obj:
        ingress = self.api.get("Ingress", self.config.ingress)
        if ingress is None:
            raise PlatformError(f"Ingress {self.config.namespace}/{self.config.ingress} does not exist")
        return ingress

    @property
    def weight_semantics(self) -> str:
        """``on-off``: the Service selects groups or not; those selected share by their pod counts.

        ingress-nginx balances over the Service's endpoints, so a weight above 0 only means "selected":
        a group's share is its ready pods over every selected group's ready pods.
        """
        return WEIGHTS_ON_OFF

    def weights(self) -> dict[str, int]:
        """1 for every group the Service selects, 0 for the others (weights are on-off here)."""
        selector = self.platform._selector()
        pinned = selector.get(GROUP_LABEL)
        names = [group_name(version) for _, version, _ in self.platform.group_deployments()]
        return {name: 1 if pinned in (None, name) else 0 for name in names}

    def set_weights(self, weights: dict[str, int] | Any) -> None:
        """Pin the selector to the one group with a weight, or unpin it for several.

        Weights are on or off: groups with a weight share the traffic by their pod counts.
        """
        on = sorted(group for group, weight in weights.items() if weight > 0)
        if not on:
            raise PlatformError("set_weights: at least one group must take traffic on kubernetes")
        if len(on) > 1:
            lingering = [
                group_name(version)
                for _, version, obj in self.platform.group_deployments()
                if group_name(version) not in on and int(obj["spec"].get("replicas", 1)) > 0
            ]
            if lingering:
                raise PlatformError(
                    f"kubernetes cannot route to {', '.join(on)} but not {', '.join(lingering)}: "
                    "a Service selects one group or all of them"
                )
            self._select(None)
            return
        group = on[0]
        base = self.api.get("Deployment", self.config.deployment)
        if base is not None and group_name(self.platform._base_version(base)) == group:
            self.platform.adopt_base()
        self._select(group)

    def restore_selector(self) -> None:
        """Give the Service the selector the chart wrote (zdu's pin and its note removed)."""

        def change(service: Obj) -> bool:
            annotations = service["metadata"].setdefault("annotations", {})
            selector = dict(base_selector(service))
            had_note = annotations.pop(BASE_SELECTOR_ANNOTATION, None) is not None
            if service["spec"].get("selector") == selector and not had_note:
                return False
            service["spec"]["selector"] = selector
            return True

        self.api.update("Service", self.config.service, change)
        log.info("Service %s has the chart's selector back", self.config.service)

    def _select(self, group: str | None) -> None:
        def change(service: Obj) -> bool:
            annotations = service["metadata"].setdefault("annotations", {})
            selector = dict(base_selector(service))
            annotations.setdefault(BASE_SELECTOR_ANNOTATION, json.dumps(selector, sort_keys=True))
            if group is not None:
                selector[GROUP_LABEL] = group
            if service["spec"].get("selector") == selector:
                return False
            service["spec"]["selector"] = selector
            return True

        self.api.update("Service", self.config.service, change)
        log.info("Service %s selects %s", self.config.service, group or "every group")

    def verify_weights(self, weights: dict[str, int] | Any) -> bool:
        """Whether the Service selects exactly the groups with a weight."""
        current = self.weights()
        return all((weights.get(group, 0) > 0) == (weight > 0) for group, weight in current.items())

    def _preview_name(self) -> str:
        return clone_name(self.config.service, "zdu-preview")

    def set_preview(self, group: str | None) -> str | None:
        """A Service and an Ingress for ``preview_host`` selecting ``group`` only; None without one."""
        name = self._preview_name()
        if group is None or not self.config.preview_host:
            self.api.delete("Ingress", name)
            self.api.delete("Service", name)
            return None
        service = self.api.get("Service", self.config.service)
        assert service is not None
        preview = preview_service(service, group, name, self.config)
        if self.api.create(preview)["spec"].get("selector") != preview["spec"]["selector"]:

            def select(obj: Obj) -> bool:
                obj["spec"]["selector"] = preview["spec"]["selector"]
                return True

            self.api.update("Service", name, select)
        self.api.create(preview_ingress(self._ingress(), service, name, self.config))
        return f"http://{self.config.preview_host}"

    def forget_preview(self, group: str) -> None:
        """Remove the preview route when it shows ``group``."""
        preview = self.api.get("Service", self._preview_name())
        if preview is not None and (preview["spec"].get("selector") or {}).get(GROUP_LABEL) == group:
            self.set_preview(None)

    def check_affinity(self) -> None:
        """Raise :class:`PreflightError` when ingress-nginx would ignore affinity on this Ingress."""
        ingress = self._ingress()
        annotations = ingress["metadata"].get("annotations") or {}
        if str(annotations.get(SERVICE_UPSTREAM, "")).lower() == "true":
            raise PreflightError(
                f'Ingress {self.config.namespace}/{self.config.ingress} has {SERVICE_UPSTREAM}: "true", '
                "under which ingress-nginx sends requests to the Service's address and ignores session "
                'affinity: sticky-nginx cannot work; set it to "false" (the chart\'s '
                "gitlab.webservice.ingress.serviceUpstream) or use the assets-shim layer"
            )

    def set_affinity(self, enabled: bool, scope: str = "session") -> None:
        """Add (remove) ingress-nginx's cookie-affinity annotations on the Ingress.

        ingress-nginx pins a client to a pod for the cookie's life (``affinity_max_age``); it has no
        pin scoped to a page's assets, so ``scope="assets"`` gets the same annotations (a warning says
        so): the load follows the clients, not the weights. Use the assets-shim layer for balance.
        """
        if enabled:
            self.check_affinity()
            if scope != "session":
                log.warning(
                    "ingress-nginx cannot pin only a page's assets (affinity scope %r): clients are "
                    "pinned to a pod for %ss, as with scope 'session'",
                    scope,
                    self.config.affinity_max_age,
                )
        wanted = affinity_annotations(self.config)

        def change(ingress: Obj) -> bool:
            annotations = ingress["metadata"].setdefault("annotations", {})
            before = dict(annotations)
            if enabled:
                annotations.update(wanted)
            else:
                for key in AFFINITY_ANNOTATIONS:
                    annotations.pop(key, None)
            return bool(annotations != before)

        self.api.update("Ingress", self.config.ingress, change)

    def route_assets(self, enabled: bool) -> None:
        """Create (delete) the Ingress that sends ``/assets`` of the same hosts to the assets shim."""
        if enabled:
            self.api.create(assets_ingress(self._ingress(), self.config))
        else:
            self.api.delete("Ingress", assets_name(self.config))

    def remove_managed_routes(self) -> None:
        """Remove the preview route, the affinity annotations, the assets route and the canary route."""
        self.set_preview(None)
        self.set_affinity(False)
        self.route_assets(False)
        self.set_canary(None)

    # -- the canary route (SplitsTraffic) ------------------------------------------------------------

    def _canary_name(self) -> str:
        return clone_name(self.config.service, "zdu-canary")

    def set_canary(
        self, group: str | None, percent: int = 0, cookie: str | None = None, header: str | None = None
    ) -> None:
        """A canary Service selecting ``group`` and an ingress-nginx canary Ingress; None removes both.

        The canary Ingress copies the main Ingress's hosts and paths with ``canary: "true"``,
        ``canary-weight: percent`` (a share of requests, whatever the pod counts) and the cookie and
        header opt-ins (:func:`~zdu_kubernetes.objects.canary_annotations`). The main Service keeps
        selecting the other groups.
        """
        name = self._canary_name()
        if group is None:
            self.api.delete("Ingress", name)
            self.api.delete("Service", name)
            return
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise PlatformError(f"canary percent must be an integer from 0 to 100, got {percent!r}")
        service = self.api.get("Service", self.config.service)
        if service is None:
            raise PlatformError(f"Service {self.config.namespace}/{self.config.service} does not exist")
        wanted_service = preview_service(service, group, name, self.config)
        if self.api.create(wanted_service)["spec"].get("selector") != wanted_service["spec"]["selector"]:

            def select(obj: Obj) -> bool:
                obj["spec"]["selector"] = wanted_service["spec"]["selector"]
                return True

            self.api.update("Service", name, select)
        port = int((service.get("spec", {}).get("ports") or [{"port": 80}])[0]["port"])
        route = {"group": group, "percent": percent, "cookie": cookie, "header": header}
        wanted = canary_ingress(self._ingress(), name, name, port, route, self.config)
        created = self.api.create(wanted)

        def change(ingress: Obj) -> bool:
            if ingress["metadata"].get("annotations") == wanted["metadata"]["annotations"]:
                return False
            ingress["metadata"]["annotations"] = wanted["metadata"]["annotations"]
            ingress["spec"] = wanted["spec"]
            return True

        if created["metadata"].get("annotations") != wanted["metadata"]["annotations"]:
            self.api.update("Ingress", name, change)
        log.info("canary Ingress %s: %d%% of requests to %s", name, percent, group)

    def canary(self) -> CanaryRoute | None:
        """The canary route, as the canary Ingress says, or None."""
        ingress = self.api.get("Ingress", self._canary_name())
        if ingress is None:
            return None
        annotations = ingress["metadata"].get("annotations") or {}
        route = json.loads(annotations.get(CANARY_ROUTE_ANNOTATION, "{}"))
        return CanaryRoute(
            group=str(route.get("group", "")),
            percent=int(annotations.get(CANARY_WEIGHT, "0")),
            cookie=route.get("cookie"),
            header=route.get("header"),
        )


class KubernetesAssetStore:
    """The assets shim: a web server Deployment whose init containers copy each version's assets in."""

    def __init__(self, platform: KubernetesPlatform) -> None:
        self.platform = platform
        self.config = platform.config
        self.api = platform.api

    def versions(self) -> list[Version]:
        """The versions the shim's Deployment holds, oldest first."""
        deployment = self.api.get("Deployment", assets_name(self.config))
        if deployment is None:
            return []
        text = (deployment["metadata"].get("annotations") or {}).get(ASSET_VERSIONS_ANNOTATION, "")
        return sorted(Version.parse(v) for v in text.split(",") if v)

    def _apply(self, versions: list[Version]) -> None:
        name = assets_name(self.config)
        body = assets_deployment(self.config, versions)
        if self.api.get("Deployment", name) is None:
            self.api.create(body)
        else:

            def change(obj: Obj) -> bool:
                if (
                    obj["spec"] == body["spec"]
                    and obj["metadata"].get("annotations") == body["metadata"]["annotations"]
                ):
                    return False
                obj["spec"] = body["spec"]
                obj["metadata"]["annotations"] = body["metadata"]["annotations"]
                return True

            self.api.update("Deployment", name, change)
        self.api.create(assets_service(self.config))
        self.platform._wait_rolled_out(
            name, f"the assets shim {name} to serve {', '.join(map(str, versions))}"
        )

    def publish(self, version: Version) -> None:
        """Add ``version``'s assets (a rolling update of the shim)."""
        versions = self.versions()
        if version in versions:
            return
        self._apply(sorted([*versions, version]))

    def prune(self, keep: Any) -> None:
        """Keep only the versions in ``keep``; without any, delete the shim."""
        versions = self.versions()
        kept = [v for v in versions if v in set(keep)]
        if kept == versions:
            return
        if not kept:
            self.api.delete("Deployment", assets_name(self.config))
            self.api.delete("Service", assets_name(self.config))
            return
        self._apply(kept)
