"""How zdu talks to the Kubernetes API: the official client, with retries, conflicts and resumed watches.

Every object travels as a plain dictionary (the API's own JSON), so that what zdu sends can be shown in
``zdu plan --offline`` and validated against the OpenAPI schemas as it is. :class:`ClusterApi` sends it
through the ``kubernetes`` package's typed API classes; :class:`OfflineApi` answers from a snapshot and
records what would be sent instead.

Faults handled here, for every request:

* connection errors, 429 and 5xx are retried (tenacity), waiting what ``Retry-After`` says when the
  server says it, else an exponential backoff;
* a 409 on a replace re-reads the object and applies the same change to the fresh copy;
* a watch that breaks is resumed from the last resourceVersion it delivered; a 410, as an HTTP status
  or as a watch ``ERROR`` event, re-lists; the stream is parsed here (any client version);
* every wait has a deadline, and its error names what was awaited and what was last seen.

With :attr:`ClusterApi.dry_run` set (``zdu plan`` against the cluster), every create, replace and
delete is sent with ``dryRun=All``: the API server validates and admits it, answers with the object it
would have stored, and stores nothing.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import tenacity

from zdu.plugins import PlatformError, UsageError

__all__ = [
    "KINDS",
    "Api",
    "ClusterApi",
    "Obj",
    "OfflineApi",
    "WaitTimeout",
    "label_selector",
    "matches",
]

log = logging.getLogger("zdu.kubernetes")

Obj = dict[str, Any]

#: kind -> (API class of the official client, the method suffix, apiVersion)
KINDS: dict[str, tuple[str, str, str]] = {
    "Deployment": ("AppsV1Api", "deployment", "apps/v1"),
    "Service": ("CoreV1Api", "service", "v1"),
    "Pod": ("CoreV1Api", "pod", "v1"),
    "Ingress": ("NetworkingV1Api", "ingress", "networking.k8s.io/v1"),
    "Job": ("BatchV1Api", "job", "batch/v1"),
    "Lease": ("CoordinationV1Api", "lease", "coordination.k8s.io/v1"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "horizontal_pod_autoscaler", "autoscaling/v2"),
}

_TRANSIENT_STATUS = frozenset({0, 429, 500, 502, 503, 504})
_CONFLICT_ATTEMPTS = 10

#: the annotation ``zdu plan --offline`` marks each recorded object with
PLANNED_ACTION = "zdu.gitlab.com/planned-action"


class WaitTimeout(PlatformError):
    """A wait for an object's state passed its deadline."""


def label_selector(labels: Mapping[str, str]) -> str:
    """``a=b,c=d`` from a mapping."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def matches(labels: Mapping[str, str] | None, selector: Mapping[str, str]) -> bool:
    """Whether ``labels`` carry every label of ``selector``."""
    labels = labels or {}
    return all(labels.get(key) == value for key, value in selector.items())


class Api(Protocol):
    """What the platform needs of the Kubernetes API, in one namespace."""

    namespace: str
    #: send every create, replace and delete as a server dry run (validated and admitted, not stored)
    dry_run: bool

    def get(self, kind: str, name: str) -> Obj | None:
        """The object, or ``None`` when there is none."""
        ...

    def list(self, kind: str, labels: Mapping[str, str] | None = None) -> list[Obj]:
        """The objects of ``kind`` carrying ``labels``."""
        ...

    def create(self, body: Obj) -> Obj:
        """Create ``body``; when it exists already, return the existing object (idempotent)."""
        ...

    def update(self, kind: str, name: str, change: Callable[[Obj], bool]) -> Obj | None:
        """Read, apply ``change`` (returns whether it changed anything), replace; re-read on 409."""
        ...

    def delete(self, kind: str, name: str, preconditions: Mapping[str, str] | None = None) -> bool:
        """Delete the object (its dependents in the background); whether it was deleted.

        ``preconditions`` (``resourceVersion``, ``uid``): delete only the object in that state; an
        object that changed meanwhile is left (False). Nothing when it is gone (False).
        """
        ...

    def wait(
        self, kind: str, name: str, done: Callable[[Obj | None], bool], timeout: float, what: str
    ) -> Obj | None:
        """Watch the object until ``done`` says so; raise :class:`WaitTimeout` after ``timeout`` seconds."""
        ...

    def log(self, pod: str) -> str:
        """The log of ``pod``'s (first) container."""
        ...


def _status_of(error: BaseException) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def _transient(error: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
    from urllib3.exceptions import HTTPError  # noqa: PLC0415

    if isinstance(error, ApiException):
        return _status_of(error) in _TRANSIENT_STATUS
    return isinstance(error, HTTPError | ConnectionError | TimeoutError)


def _retry_after(error: BaseException) -> float | None:
    headers = getattr(error, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _message(error: BaseException) -> str:
    body = getattr(error, "body", None)
    if body:
        try:
            status = json.loads(body)
            code = status.get("code", _status_of(error))
            return f"{code} {status.get('reason', '')}: {status.get('message', '')}"
        except (ValueError, AttributeError):
            pass
    status = _status_of(error)
    reason = getattr(error, "reason", None)
    return f"{status} {reason}" if status is not None else f"{type(error).__name__}: {error}"


class ClusterApi:
    """The Kubernetes API of a cluster, through the official ``kubernetes`` client.

    :param configuration: a ``kubernetes.client.Configuration`` (host, credentials).
    :param namespace: the namespace every call is in.
    :param attempts: tries of one request on connection errors, 429 and 5xx.
    :param backoff: the first backoff in seconds when the server gives no ``Retry-After`` (doubles).
    :param sleep: how to wait between tries (tests pass a recorder).
    """

    def __init__(
        self,
        configuration: Any,
        namespace: str,
        *,
        attempts: int = 6,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from kubernetes import client  # noqa: PLC0415

        # zdu's retry policy is the one in force: urllib3 would otherwise retry 429/503 on its own
        configuration.retries = 0
        self.namespace = namespace
        self.attempts = attempts
        self.backoff = backoff
        self.sleep = sleep
        self._client = client.ApiClient(configuration)
        self._apis: dict[str, Any] = {}
        self.retries = 0
        self.conflicts = 0
        self.watch_resumes = 0
        self.dry_run = False

    def _writing(self) -> dict[str, Any]:
        """The options of a create, replace or delete: ``dryRun=All`` in a dry run."""
        return {"dry_run": "All"} if self.dry_run else {}

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()

    # -- requests ----------------------------------------------------------------------------------

    def _method(self, kind: str, verb: str) -> Callable[..., Any]:
        from kubernetes import client  # noqa: PLC0415

        class_name, suffix, _ = KINDS[kind]
        if class_name not in self._apis:
            self._apis[class_name] = getattr(client, class_name)(self._client)
        method: Callable[..., Any] = getattr(self._apis[class_name], f"{verb}_namespaced_{suffix}")
        return method

    def _wait_time(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        told = _retry_after(error) if error is not None else None
        if told is not None:
            return told
        return float(min(self.backoff * 2 ** (state.attempt_number - 1), 30.0))

    def _call(self, kind: str, verb: str, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(f"{verb} {kind}", self._method(kind, verb), *args, **kwargs)

    def _retrying(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self.retries += 1
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "kubernetes API %s failed (%s); try %d of %d",
                what,
                _message(error) if error else "?",
                state.attempt_number + 1,
                self.attempts,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_transient),
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self._wait_time,
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(method, *args, namespace=self.namespace, _preload_content=False, **kwargs)

    def _json(self, kind: str, verb: str, *args: Any, **kwargs: Any) -> Obj:
        response = self._call(kind, verb, *args, **kwargs)
        data: Obj = json.loads(response.data)
        return data

    def _failed(self, verb: str, kind: str, name: str, error: BaseException) -> PlatformError:
        return PlatformError(
            f"kubernetes API: {verb} {kind} {self.namespace}/{name} failed: {_message(error)}"
        )

    def get(self, kind: str, name: str) -> Obj | None:
        """The object, or ``None`` when there is none."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            return self._json(kind, "read", name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise self._failed("read", kind, name, error) from None
        except Exception as error:
            if _transient(error):
                raise self._failed("read", kind, name, error) from None
            raise

    def _list(self, kind: str, **kwargs: Any) -> Obj:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            return self._json(kind, "list", **kwargs)
        except ApiException as error:
            raise self._failed("list", kind, "*", error) from None
        except Exception as error:
            if _transient(error):
                raise self._failed("list", kind, "*", error) from None
            raise

    def list(self, kind: str, labels: Mapping[str, str] | None = None) -> list[Obj]:
        """The objects of ``kind`` carrying ``labels``."""
        kwargs = {"label_selector": label_selector(labels)} if labels else {}
        items: list[Obj] = self._list(kind, **kwargs).get("items") or []
        _, _, api_version = KINDS[kind]
        for item in items:  # a list's items carry no kind
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        return items

    def create(self, body: Obj) -> Obj:
        """Create ``body``; when it exists already, return the existing object (idempotent)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        kind, name = body["kind"], body["metadata"]["name"]
        try:
            return self._json(kind, "create", body=body, **self._writing())
        except ApiException as error:
            if error.status == 409:
                existing = self.get(kind, name)
                if existing is not None:
                    return existing
            raise self._failed("create", kind, name, error) from None
        except Exception as error:
            if _transient(error):
                raise self._failed("create", kind, name, error) from None
            raise

    def update(self, kind: str, name: str, change: Callable[[Obj], bool]) -> Obj | None:
        """Read, apply ``change``, replace with the read resourceVersion; on 409 re-read and re-apply."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        for _ in range(_CONFLICT_ATTEMPTS):
            current = self.get(kind, name)
            if current is None:
                return None
            current.pop("status", None)
            if not change(current):
                return current
            try:
                return self._json(kind, "replace", name, body=current, **self._writing())
            except ApiException as error:
                if error.status == 409:
                    self.conflicts += 1
                    log.info("conflict replacing %s %s: re-reading and applying the change again", kind, name)
                    continue
                raise self._failed("replace", kind, name, error) from None
            except Exception as error:
                if _transient(error):
                    raise self._failed("replace", kind, name, error) from None
                raise
        raise PlatformError(
            f"kubernetes API: {kind} {self.namespace}/{name} kept changing under zdu "
            f"({_CONFLICT_ATTEMPTS} conflicts in a row)"
        )

    def delete(self, kind: str, name: str, preconditions: Mapping[str, str] | None = None) -> bool:
        """Delete the object, dependents in the background; whether it was deleted.

        With ``preconditions`` (``resourceVersion``, ``uid``), the API server deletes it only in that
        state; a 409 (it changed meanwhile) leaves it and returns False, as a 404 (gone) does.
        """
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        options: Obj = {"propagationPolicy": "Background"}
        if preconditions:
            options["preconditions"] = dict(preconditions)
        try:
            self._call(kind, "delete", name, body=options, **self._writing())
        except ApiException as error:
            if error.status == 404:
                return False
            if error.status == 409 and preconditions:
                log.info("%s %s changed since it was read: not deleted (%s)", kind, name, _message(error))
                return False
            raise self._failed("delete", kind, name, error) from None
        except Exception as error:
            if _transient(error):
                raise self._failed("delete", kind, name, error) from None
            raise
        return True

    def log(self, pod: str) -> str:
        """The log of ``pod``'s first container (empty when it has none yet)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            self._method("Pod", "read")  # builds the CoreV1Api
            core = self._apis["CoreV1Api"]
            response = self._retrying(f"read log of Pod {pod}", core.read_namespaced_pod_log, pod)
        except ApiException as error:
            if error.status in (400, 404):
                return ""
            raise self._failed("read log of", "Pod", pod, error) from None
        text: str = response.data.decode("utf-8", errors="replace")
        return text

    # -- waiting -----------------------------------------------------------------------------------

    def wait(
        self, kind: str, name: str, done: Callable[[Obj | None], bool], timeout: float, what: str
    ) -> Obj | None:
        """Watch ``kind``/``name`` until ``done(object)`` (``None``: it is gone) is true.

        ``done`` may raise to end the wait with a failure. A watch that breaks is resumed from the
        last resourceVersion seen; a 410 (expired) re-lists. After ``timeout`` seconds,
        :class:`WaitTimeout` names ``what`` and the object's last state.
        """
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        deadline = time.monotonic() + timeout
        current, version = self._relist(kind, name)
        while True:
            if done(current):
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"timed out after {timeout:g}s waiting for {what}; last seen: {_describe(current)}"
                )
            response = None
            try:
                # the raw stream, parsed here: the client's Watch(deserialize=False) needs client 34+
                response = self._method(kind, "list")(
                    namespace=self.namespace,
                    field_selector=f"metadata.name={name}",
                    resource_version=version,
                    timeout_seconds=max(1, min(int(left) + 1, 300)),
                    allow_watch_bookmarks=True,
                    watch=True,
                    _preload_content=False,
                    _request_timeout=(10, left + 10),
                )
                for event in _events(response):
                    kind_of_event = event.get("type")
                    obj = event.get("object") or {}
                    if kind_of_event == "ERROR":
                        code = obj.get("code")
                        if code == 410:
                            log.info("watch of %s %s expired (410 Gone): listing again", kind, name)
                            current, version = self._relist(kind, name)
                            break
                        raise PlatformError(
                            f"kubernetes API: watch {kind} {self.namespace}/{name} failed: "
                            f"{code} {obj.get('reason', '')}: {obj.get('message', '')}"
                        )
                    version = str(obj.get("metadata", {}).get("resourceVersion", version))
                    if kind_of_event == "BOOKMARK":
                        continue
                    current = None if kind_of_event == "DELETED" else obj
                    if done(current):
                        return current
                    if time.monotonic() >= deadline:
                        break
            except ApiException as error:
                if error.status == 410:
                    log.info("watch of %s %s expired: listing again", kind, name)
                    current, version = self._relist(kind, name)
                    continue
                if not _transient(error):
                    raise self._failed("watch", kind, name, error) from None
                self._watch_broke(kind, name, version, error)
            except Exception as error:
                if not _transient(error) and not isinstance(error, ValueError):
                    raise
                self._watch_broke(kind, name, version, error)
            finally:
                if response is not None:
                    response.release_conn()

    def _relist(self, kind: str, name: str) -> tuple[Obj | None, str]:
        """The object (or None) and the list's resourceVersion, to watch from."""
        listed = self._list(kind, field_selector=f"metadata.name={name}")
        items = listed.get("items") or []
        return (items[0] if items else None), str(listed.get("metadata", {}).get("resourceVersion", ""))

    def _watch_broke(self, kind: str, name: str, version: str, error: BaseException) -> None:
        self.watch_resumes += 1
        log.warning(
            "watch of %s %s broke (%s): resuming from resourceVersion %s",
            kind,
            name,
            _message(error),
            version,
        )
        self.sleep(min(self.backoff, 1.0))


def _events(response: Any) -> Iterator[Obj]:
    """The events of a watch response, one JSON object a line (a line cut short raises ValueError)."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                event: Obj = json.loads(line)
                yield event
    if buffer.strip():
        last: Obj = json.loads(buffer)
        yield last


def _describe(obj: Obj | None) -> str:
    if obj is None:
        return "no such object"
    status = obj.get("status") or {}
    interesting = {
        key: status[key]
        for key in (
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "succeeded",
            "failed",
            "active",
        )
        if key in status
    }
    conditions = [
        f"{c.get('type')}={c.get('status')} ({c.get('reason', '')}: {c.get('message', '')})"
        for c in status.get("conditions") or []
    ]
    generation = obj.get("metadata", {}).get("generation")
    parts = [f"generation {generation}"] if generation is not None else []
    parts += [f"{key} {value}" for key, value in interesting.items()]
    parts += conditions
    return ", ".join(parts) or "no status yet"


class OfflineApi:
    """A snapshot of a namespace's objects, changed in memory; every change is recorded, none sent.

    Used by ``zdu plan --offline``. Deployments and Jobs converge at once (their status says so), and
    each Deployment's pods are made up from its template, all ready.

    :param snapshot: a JSON file: a Kubernetes ``List`` (``kubectl get deploy,svc,ingress -o json``)
        or a JSON array of objects.
    :param namespace: the namespace the platform works in.
    """

    def __init__(self, snapshot: Path, namespace: str) -> None:
        self.namespace = namespace
        try:
            data = json.loads(snapshot.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UsageError(f"--offline {snapshot}: cannot read a JSON snapshot: {error}") from None
        except RecursionError:
            raise UsageError(
                f"--offline {snapshot}: cannot read a JSON snapshot: too deeply nested"
            ) from None
        items = data.get("items") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise UsageError(f"--offline {snapshot}: expected a Kubernetes List or a JSON array of objects")
        self._objects: dict[tuple[str, str], Obj] = {}
        for index, item in enumerate(items):
            kind = item.get("kind") if isinstance(item, dict) else None
            if not isinstance(kind, str) or kind not in KINDS:
                continue  # a kind zdu does not touch
            metadata = item.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if not isinstance(name, str) or not name:
                continue  # no object zdu could address
            try:
                self._objects[(kind, name)] = copy.deepcopy(item)
            except RecursionError:
                raise UsageError(f"--offline {snapshot}: items[{index}]: nested too deeply") from None
        self.changes: list[Obj] = []
        self._serial = 0
        self.dry_run = False  # nothing is sent anyway

    def close(self) -> None:
        """Nothing to close."""

    def _record(self, action: str, obj: Obj) -> None:
        recorded = copy.deepcopy(obj)
        recorded.pop("status", None)
        metadata = recorded.setdefault("metadata", {})
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            metadata.pop(key, None)
        metadata.setdefault("namespace", self.namespace)
        metadata.setdefault("annotations", {})[PLANNED_ACTION] = action
        self.changes.append(recorded)

    def get(self, kind: str, name: str) -> Obj | None:
        """The object as changed so far."""
        obj = self._objects.get((kind, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, labels: Mapping[str, str] | None = None) -> list[Obj]:
        """Objects of ``kind`` carrying ``labels``; pods are made up from the Deployments."""
        if kind == "Pod":
            return [pod for pod in self._pods() if matches(pod["metadata"].get("labels"), labels or {})]
        return [
            copy.deepcopy(obj)
            for (k, _), obj in sorted(self._objects.items())
            if k == kind and matches(obj.get("metadata", {}).get("labels"), labels or {})
        ]

    def _pods(self) -> Iterable[Obj]:
        for (kind, name), deployment in sorted(self._objects.items()):
            if kind != "Deployment":
                continue
            template = deployment["spec"]["template"]
            for index in range(int(deployment["spec"].get("replicas", 1))):
                yield {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": f"{name}-planned-{index}",
                        "labels": dict(template.get("metadata", {}).get("labels") or {}),
                    },
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
                }

    def _converge(self, obj: Obj) -> None:
        self._serial += 1
        metadata = obj.setdefault("metadata", {})
        metadata["resourceVersion"] = str(self._serial)
        metadata["generation"] = int(metadata.get("generation", 0)) + 1
        if obj["kind"] == "Deployment":
            replicas = int(obj["spec"].get("replicas", 1))
            obj["status"] = {
                "observedGeneration": metadata["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
        elif obj["kind"] == "Job":
            obj["status"] = {
                "succeeded": 1,
                "conditions": [{"type": "Complete", "status": "True"}],
            }

    def create(self, body: Obj) -> Obj:
        """Record a create; the object then exists in the snapshot."""
        key = (body["kind"], body["metadata"]["name"])
        if key in self._objects:
            return copy.deepcopy(self._objects[key])
        self._record("create", body)
        obj = copy.deepcopy(body)
        self._converge(obj)
        self._objects[key] = obj
        return copy.deepcopy(obj)

    def update(self, kind: str, name: str, change: Callable[[Obj], bool]) -> Obj | None:
        """Record a replace when ``change`` changes something."""
        current = self.get(kind, name)
        if current is None:
            return None
        current.pop("status", None)
        if not change(current):
            return current
        self._record("replace", current)
        self._converge(current)
        self._objects[(kind, name)] = current
        return copy.deepcopy(current)

    def delete(self, kind: str, name: str, preconditions: Mapping[str, str] | None = None) -> bool:
        """Record a delete (when the object is in the state ``preconditions`` give)."""
        obj = self._objects.get((kind, name))
        if obj is None:
            return False
        metadata = obj.get("metadata") or {}
        if any(metadata.get(key) != value for key, value in (preconditions or {}).items()):
            return False
        del self._objects[(kind, name)]
        self._record("delete", obj)
        return True

    def wait(
        self, kind: str, name: str, done: Callable[[Obj | None], bool], timeout: float, what: str
    ) -> Obj | None:
        """Everything converged at once: one look."""
        current = self.get(kind, name)
        if not done(current):
            raise WaitTimeout(f"offline plan: {what} would not be reached ({_describe(current)})")
        return current

    def log(self, pod: str) -> str:
        """No logs offline."""
        return ""
