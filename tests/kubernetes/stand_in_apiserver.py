"""A STAND-IN for a Kubernetes API server: no cluster can run on this machine, so tests talk to this.

A real HTTP server on loopback (``http.server`` in a thread) serving exactly the endpoints zdu uses, with
the API's JSON, resourceVersions (a 409 for a stale replace), label and field selectors, and watches
(chunked streams of events from a resourceVersion on). A small controller advances Deployments (pods
created from the template, ready a tick later, old template's pods removed once the new ones are
ready; ``observedGeneration``, ``updatedReplicas``, ``availableReplicas``, the ``Progressing``
condition) and Jobs (a pod that "runs" by asking :attr:`StandInApiServer.job_handler`).

Faults on demand: :meth:`StandInApiServer.inject` answers the next matching requests with 409, 429
(with ``Retry-After``) or 500; :meth:`StandInApiServer.break_watches` cuts the next watch streams
before their first event (a chunk cut short); :meth:`StandInApiServer.expire_watches` answers the
next watches with an ``ERROR`` event carrying a 410 Status.

As the API server does: ``dryRun=All`` on a create, replace or delete validates and admits the
request and answers with the would-be object, persisting nothing (no resourceVersion, no event);
a delete honours ``preconditions`` (``resourceVersion``, ``uid``) with a 409. Validation is a small
part of the real one (names, containers with a name and an image, a Job's restart policy: a 422
``Invalid`` naming the field); :attr:`StandInApiServer.admission` stands for admission webhooks
(a denial is a 400 naming the webhook). The schema tests validate the objects in full.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

Obj = dict[str, Any]

RESOURCES = {
    "deployments": "Deployment",
    "services": "Service",
    "pods": "Pod",
    "ingresses": "Ingress",
    "jobs": "Job",
    "leases": "Lease",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
}
API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "Pod": "v1",
    "Ingress": "networking.k8s.io/v1",
    "Job": "batch/v1",
    "Lease": "coordination.k8s.io/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}
_PATH = re.compile(
    r"^/(?:api/v1|apis/[^/]+/v[12])/namespaces/(?P<ns>[^/]+)/(?P<resource>[a-z]+)"
    r"(?:/(?P<name>[^/]+))?(?P<log>/log)?$"
)


class Fault:
    """Answer the next ``times`` requests matching ``method`` and ``resource`` with ``status``."""

    def __init__(self, method: str, resource: str, status: int, times: int, retry_after: str | None) -> None:
        self.method, self.resource, self.status = method, resource, status
        self.times, self.retry_after = times, retry_after


def _selector(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    pairs = (part.split("=", 1) for part in text.split(",") if part)
    return {key.rstrip("="): value.lstrip("=") for key, value in pairs}


def _matches(obj: Obj, labels: dict[str, str], fields: dict[str, str]) -> bool:
    have = obj["metadata"].get("labels") or {}
    if any(have.get(k) != v for k, v in labels.items()):
        return False
    return all(k != "metadata.name" or obj["metadata"]["name"] == v for k, v in fields.items())


def _status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


class StandInApiServer:
    """The stand-in; ``url`` is what a ``kubernetes.client.Configuration`` gets as ``host``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.events: list[tuple[int, str, str, Obj]] = []  # (rv, kind, type, object)
        self.version = 100
        self.faults: list[Fault] = []
        self.watch_breaks: dict[str, int] = {}
        self.watch_errors: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.failing_images: set[str] = set()
        self.job_handler: Callable[[Obj], tuple[int, str]] = lambda job: (0, "done\n")
        self.job_logs: dict[str, str] = {}
        self.jobs_stalled = False
        self.hpa_writes: list[tuple[str, int, int]] = []
        #: an admission webhook: (method, object) -> a denial message, or None to admit
        self.admission: Callable[[str, Obj], str | None] = lambda method, obj: None
        #: every create, replace and delete: (method, kind, name, dry run)
        self.writes: list[tuple[str, str, str, bool]] = []
        self._serial = 0
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # answers go out in several writes: without this, delayed ACKs cost 40 ms each
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def handle(self) -> None:
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    super().handle()  # a client may go away (a broken watch, a closed pool)

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def do_PUT(self) -> None:
                server._handle(self, "PUT")

            def do_DELETE(self) -> None:
                server._handle(self, "DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._threads = [
            threading.Thread(target=self.httpd.serve_forever, daemon=True),
            threading.Thread(target=self._control_loop, daemon=True),
        ]

    def capture_jobs(self, output: str = "") -> list[Obj]:
        """From now on every Job "runs" successfully printing ``output``; returns the list they land in."""
        jobs: list[Obj] = []

        def handler(job: Obj) -> tuple[int, str]:
            jobs.append(job)
            return 0, output

        self.job_handler = handler
        return jobs

    def start(self) -> StandInApiServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.changed:
            self.changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- test helpers ------------------------------------------------------------------------------

    def inject(
        self, method: str, resource: str, status: int, times: int = 1, retry_after: str | None = None
    ) -> None:
        with self.lock:
            self.faults.append(Fault(method, resource, status, times, retry_after))

    def expire_watches(self, resource: str, times: int = 1) -> None:
        """Answer the next watches of ``resource`` with an ERROR event (410 Gone), as etcd compaction does."""
        with self.lock:
            self.watch_errors[resource] = self.watch_errors.get(resource, 0) + times

    def break_watches(self, resource: str, times: int = 1) -> None:
        with self.lock:
            self.watch_breaks[resource] = self.watch_breaks.get(resource, 0) + times

    def put(self, obj: Obj) -> Obj:
        """Create or overwrite ``obj`` directly (seeding a test)."""
        with self.lock:
            return self._write(copy.deepcopy(obj), "ADDED")

    def remove(self, kind: str, name: str, namespace: str = "gitlab") -> None:
        """Delete an object directly (as someone else would)."""
        with self.lock:
            self._remove(kind, namespace, name)

    def get(self, kind: str, name: str, namespace: str = "gitlab") -> Obj | None:
        with self.lock:
            obj = self.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str = "gitlab") -> list[Obj]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self.objects.items())
                if k == kind and ns == namespace
            ]

    # -- storage -----------------------------------------------------------------------------------

    def _write(self, obj: Obj, event: str) -> Obj:
        kind = obj["kind"]
        namespace = obj["metadata"].setdefault("namespace", "gitlab")
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        if "uid" not in obj["metadata"]:
            self._serial += 1
            seed = f"{kind}/{obj['metadata']['name']}/{self._serial}"
            obj["metadata"]["uid"] = hashlib.sha1(seed.encode()).hexdigest()
        self.objects[(kind, namespace, obj["metadata"]["name"])] = obj
        self.events.append((self.version, kind, event, copy.deepcopy(obj)))
        self.changed.notify_all()
        return obj

    def _remove(self, kind: str, namespace: str, name: str) -> Obj | None:
        obj = self.objects.pop((kind, namespace, name), None)
        if obj is not None:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, kind, "DELETED", copy.deepcopy(obj)))
            self.changed.notify_all()
        return obj

    # -- HTTP --------------------------------------------------------------------------------------

    def _send(
        self, handler: BaseHTTPRequestHandler, code: int, body: Obj, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        match = _PATH.match(url.path)
        if match is None or match["resource"] not in RESOURCES:
            self._send(handler, 404, _status(404, "NotFound", f"no endpoint {url.path}"))
            return
        resource, namespace, name = match["resource"], match["ns"], match["name"]
        kind = RESOURCES[resource]
        # the API server parses booleans as Go's strconv.ParseBool does (older clients send "True")
        watching = query.get("watch") in ("1", "t", "T", "true", "TRUE", "True")
        with self.lock:
            since = f"?watch&resourceVersion={query.get('resourceVersion', '')}"
            self.requests.append((method, url.path + (since if watching else "")))
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.resource == resource:
                    fault.times -= 1
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                    reason = {409: "Conflict", 429: "TooManyRequests"}.get(fault.status, "InternalError")
                    self._send(
                        handler, fault.status, _status(fault.status, reason, "injected by the test"), headers
                    )
                    return
        if watching:
            self._watch(handler, kind, namespace, query)
            return
        with self.lock:
            code, answer = self._answer(method, kind, namespace, name, query, body, bool(match["log"]))
        if isinstance(answer, str):
            data = answer.encode()
            handler.send_response(code)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        self._send(handler, code, answer)

    def _answer(
        self,
        method: str,
        kind: str,
        namespace: str,
        name: str | None,
        query: dict[str, str],
        body: Obj | None,
        log: bool,
    ) -> tuple[int, Obj | str]:
        key = (kind, namespace, name or "")
        if method == "GET" and name is None:
            labels, fields = _selector(query.get("labelSelector")), _selector(query.get("fieldSelector"))
            items = [
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self.objects.items())
                if k == kind and ns == namespace and _matches(o, labels, fields)
            ]
            return 200, {
                "kind": f"{kind}List",
                "apiVersion": API_VERSIONS[kind],
                "metadata": {"resourceVersion": str(self.version)},
                "items": items,
            }
        if method == "GET":
            if key not in self.objects:
                return 404, _status(404, "NotFound", f"{kind.lower()}s {name!r} not found")
            if log:
                return 200, self.job_logs.get(name or "", "")
            return 200, copy.deepcopy(self.objects[key])
        dry_run = query.get("dryRun") == "All"
        if method in ("POST", "PUT", "DELETE"):
            written = (body or {}).get("metadata", {}).get("name") if method == "POST" else name
            self.writes.append((method, kind, str(written or ""), dry_run))
        if method == "POST":
            assert body is not None
            body["metadata"]["namespace"] = namespace
            if (kind, namespace, body["metadata"]["name"]) in self.objects:
                return 409, _status(
                    409, "AlreadyExists", f"{kind.lower()}s {body['metadata']['name']!r} already exists"
                )
            refused = self._refused(method, kind, body)
            if refused is not None:
                return refused
            body.setdefault("apiVersion", API_VERSIONS[kind])
            body["metadata"]["generation"] = 1
            body["metadata"]["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            if dry_run:
                return 201, body
            return 201, copy.deepcopy(self._write(body, "ADDED"))
        if method == "PUT":
            assert body is not None
            current = self.objects.get(key)
            if current is None:
                return 404, _status(404, "NotFound", f"{kind.lower()}s {name!r} not found")
            sent = body["metadata"].get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                return 409, _status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version",
                )
            refused = self._refused(method, kind, body)
            if refused is not None:
                return refused
            body["metadata"]["namespace"] = namespace
            generation = int(current["metadata"].get("generation", 1))
            if body.get("spec") != current.get("spec"):
                generation += 1
            body["metadata"]["generation"] = generation
            body["metadata"]["creationTimestamp"] = current["metadata"].get("creationTimestamp")
            body["status"] = current.get("status", {})
            if dry_run:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                return 200, body
            return 200, copy.deepcopy(self._write(body, "MODIFIED"))
        if method == "DELETE":
            current = self.objects.get(key)
            if current is None:
                return 404, _status(404, "NotFound", f"{kind.lower()}s {name!r} not found")
            preconditions = (body or {}).get("preconditions") or {}
            for field, have in (
                ("uid", current["metadata"].get("uid")),
                ("resourceVersion", current["metadata"].get("resourceVersion")),
            ):
                wanted = preconditions.get(field)
                if wanted and wanted != have:
                    return 409, _status(
                        409,
                        "Conflict",
                        f"Precondition failed: {field} in precondition: {wanted}, "
                        f"{field} in object meta: {have}",
                    )
            if dry_run:
                return 200, copy.deepcopy(current)
            obj = self._remove(kind, namespace, name or "")
            if obj is None:
                return 404, _status(404, "NotFound", f"{kind.lower()}s {name!r} not found")
            for pod in [o for (k, ns, _), o in self.objects.items() if k == "Pod" and ns == namespace]:
                if pod["metadata"].get("annotations", {}).get("stand-in/owner") == f"{kind}/{name}":
                    self._remove("Pod", namespace, pod["metadata"]["name"])
            return 200, _status(200, "", "deleted") | {"status": "Success"}
        return 405, _status(405, "MethodNotAllowed", method)

    def _refused(self, method: str, kind: str, body: Obj) -> tuple[int, Obj] | None:
        """A 422 for an invalid object, a 400 for one an admission webhook denies, else None."""
        name = str(body.get("metadata", {}).get("name") or "")
        problems = _invalid(kind, body)
        if problems:
            group = API_VERSIONS[kind].split("/")[0] if "/" in API_VERSIONS[kind] else ""
            qualified = f"{kind}.{group}" if group else kind
            return 422, _status(422, "Invalid", f'{qualified} "{name}" is invalid: {", ".join(problems)}')
        denial = self.admission(method, body)
        if denial is not None:
            return 400, _status(
                400, "BadRequest", f'admission webhook "policy.stand-in.example" denied the request: {denial}'
            )
        return None

    def _watch(
        self, handler: BaseHTTPRequestHandler, kind: str, namespace: str, query: dict[str, str]
    ) -> None:
        labels, fields = _selector(query.get("labelSelector")), _selector(query.get("fieldSelector"))
        since = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 30)
        resource = next(r for r, k in RESOURCES.items() if k == kind)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        with self.lock:
            expiring = self.watch_errors.get(resource, 0) > 0
            if expiring:
                self.watch_errors[resource] -= 1
        if expiring:
            gone = _status(410, "Expired", f"too old resource version: {since}")
            line = json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n"
            handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n0\r\n\r\n")
            handler.wfile.flush()
            return
        try:
            while not self._stop.is_set():
                with self.changed:
                    breaking = self.watch_breaks.get(resource, 0) > 0
                    if breaking:
                        self.watch_breaks[resource] -= 1
                    else:
                        fresh = [
                            (rv, event, obj)
                            for rv, k, event, obj in self.events
                            if rv > since
                            and k == kind
                            and obj["metadata"].get("namespace") == namespace
                            and _matches(obj, labels, fields)
                        ]
                        if not fresh:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self.changed.wait(min(left, 0.2))
                            continue
                if breaking:
                    handler.wfile.write(b'5\r\n{"typ')  # a chunk cut short, then the connection closes
                    handler.wfile.flush()
                    handler.close_connection = True
                    return
                for rv, event, obj in fresh:
                    line = json.dumps({"type": event, "object": obj}).encode() + b"\n"
                    handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    handler.wfile.flush()
                    since = rv
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- controllers -------------------------------------------------------------------------------

    def _control_loop(self) -> None:
        while not self._stop.is_set():
            with self.changed:
                self._reconcile()
                self.changed.wait(0.01)

    def _reconcile(self) -> None:
        for (kind, namespace, name), obj in list(self.objects.items()):
            if kind == "Deployment":
                self._deployment(namespace, name, obj)
            elif kind == "Job":
                self._job(namespace, name, obj)
            elif kind == "HorizontalPodAutoscaler":
                self._autoscaler(namespace, name, obj)
        for (kind, _namespace, _name), pod in list(self.objects.items()):
            if kind == "Pod" and pod["status"].get("phase") == "Pending":
                image = pod["spec"]["containers"][0]["image"]
                pod = copy.deepcopy(pod)
                if image in self.failing_images:
                    pod["status"] = {
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "False"}],
                        "containerStatuses": [
                            {
                                "name": "c",
                                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                "ready": False,
                                "restartCount": 3,
                                "image": image,
                                "imageID": "",
                            }
                        ],
                    }
                else:
                    pod["status"] = {
                        "phase": "Running",
                        "podIP": "10.0.0.1",
                        "conditions": [{"type": "Ready", "status": "True"}],
                    }
                self._write(pod, "MODIFIED")

    def _pods_of(self, namespace: str, owner: str) -> list[Obj]:
        return [
            o
            for (k, ns, _), o in self.objects.items()
            if k == "Pod"
            and ns == namespace
            and o["metadata"].get("annotations", {}).get("stand-in/owner") == owner
        ]

    def _new_pod(self, namespace: str, owner: str, name: str, template: Obj, extra: dict[str, str]) -> None:
        pod = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**(template.get("metadata", {}).get("labels") or {}), **extra},
                "annotations": {"stand-in/owner": owner},
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending"},
        }
        self._write(pod, "ADDED")

    def _deployment(self, namespace: str, name: str, obj: Obj) -> None:
        spec = obj["spec"]
        owner = f"Deployment/{name}"
        template_hash = hashlib.sha1(json.dumps(spec["template"], sort_keys=True).encode()).hexdigest()[:10]
        pods = self._pods_of(namespace, owner)
        current = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == template_hash]
        old = [p for p in pods if p not in current]
        want = int(spec.get("replicas", 1))
        if not spec.get("paused"):
            for index in range(len(current), want):
                serial = len(self.events)
                self._new_pod(
                    namespace,
                    owner,
                    f"{name}-{template_hash[:5]}-{serial}-{index}",
                    spec["template"],
                    {"pod-template-hash": template_hash},
                )
            for pod in current[want:]:
                self._remove("Pod", namespace, pod["metadata"]["name"])
            ready_new = sum(1 for p in current[:want] if _ready(p))
            if ready_new >= want:
                for pod in old:
                    self._remove("Pod", namespace, pod["metadata"]["name"])
        pods = self._pods_of(namespace, owner)
        current = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == template_hash]
        failing = any(p["status"].get("containerStatuses") and not _ready(p) for p in current)
        available = sum(1 for p in pods if _ready(p))
        complete = len(current) == want and available == want and len(pods) == want
        progressing = {
            "type": "Progressing",
            "status": "True",
            "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
            "message": f"{name} rolling out",
        }
        if failing:
            progressing = {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet of "{name}" has timed out progressing.',
            }
        status = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": len(current),
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": [
                {"type": "Available", "status": "True" if available >= want else "False"},
                progressing,
            ],
        }
        if obj.get("status") != status:
            updated = copy.deepcopy(obj)
            updated["status"] = status
            self._write(updated, "MODIFIED")

    def _autoscaler(self, namespace: str, name: str, hpa: Obj) -> None:
        """As the HPA controller does at idle load: keep the target within [minReplicas, maxReplicas].

        A target at 0 replicas switches it off (``ScalingActive`` False, ``ScalingDisabled``); a
        direction whose ``selectPolicy`` is ``Disabled`` is not scaled. Every replica change it makes
        is counted in :attr:`StandInApiServer.hpa_writes` (a fight with whoever set the replicas).
        """
        spec = hpa["spec"]
        ref = spec.get("scaleTargetRef") or {}
        target = self.objects.get(("Deployment", namespace, ref.get("name", "")))
        behavior = spec.get("behavior") or {}
        active, reason = True, "ValidMetricFound"
        current = desired = 0
        if target is None:
            active, reason = False, "FailedGetScale"
        else:
            current = desired = int(target["spec"].get("replicas", 1))
            if current == 0:
                active, reason = False, "ScalingDisabled"
            else:
                low, high = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
                wanted = min(max(current, low), high)
                direction = "scaleUp" if wanted > current else "scaleDown"
                if (behavior.get(direction) or {}).get("selectPolicy") != "Disabled":
                    desired = wanted
                if desired != current:
                    updated = copy.deepcopy(target)
                    updated["spec"]["replicas"] = desired
                    updated["metadata"]["generation"] = int(updated["metadata"].get("generation", 1)) + 1
                    self.hpa_writes.append((ref["name"], current, desired))
                    self._write(updated, "MODIFIED")
        status = {
            "currentReplicas": current,
            "desiredReplicas": desired,
            "conditions": [
                {"type": "ScalingActive", "status": "True" if active else "False", "reason": reason}
            ],
        }
        if hpa.get("status") != status:
            updated = copy.deepcopy(hpa)
            updated["status"] = status
            self._write(updated, "MODIFIED")

    def _job(self, namespace: str, name: str, job: Obj) -> None:
        status = job.get("status") or {}
        if status.get("conditions") or self.jobs_stalled:
            return
        owner = f"Job/{name}"
        pods = self._pods_of(namespace, owner)
        if not pods:
            self._new_pod(namespace, owner, f"{name}-run", job["spec"]["template"], {"job-name": name})
            return
        pod = pods[0]
        code, output = self.job_handler(job)
        self.job_logs[pod["metadata"]["name"]] = output
        pod = copy.deepcopy(pod)
        pod["status"] = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": "migrations",
                    "state": {"terminated": {"exitCode": code}},
                    "ready": False,
                    "restartCount": 0,
                    "image": "",
                    "imageID": "",
                }
            ],
        }
        self._write(pod, "MODIFIED")
        updated = copy.deepcopy(job)
        if code == 0:
            updated["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        else:
            updated["status"] = {
                "failed": 1,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
            }
        self._write(updated, "MODIFIED")


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _invalid(kind: str, obj: Obj) -> list[str]:
    """Some of the API server's validation: names, containers, a Job's restart policy."""
    problems = []
    name = str(obj.get("metadata", {}).get("name") or "")
    if not _DNS_SUBDOMAIN.match(name):
        problems.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain is required")
    template = (obj.get("spec") or {}).get("template") if kind in ("Deployment", "Job") else None
    pod = (template or {}).get("spec") if kind != "Pod" else obj.get("spec")
    if pod is None:
        return problems
    where = "spec" if kind == "Pod" else "spec.template.spec"
    for key in ("initContainers", "containers"):
        for index, container in enumerate(pod.get(key) or []):
            if not _DNS_LABEL.match(str(container.get("name") or "")):
                problems.append(f"{where}.{key}[{index}].name: Invalid value: {container.get('name')!r}")
            if not container.get("image"):
                problems.append(f"{where}.{key}[{index}].image: Required value")
    if not pod.get("containers"):
        problems.append(f"{where}.containers: Required value")
    if kind == "Job" and pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(
            f"{where}.restartPolicy: Unsupported value: {pod.get('restartPolicy')!r}: "
            'supported values: "OnFailure", "Never"'
        )
    return problems


def _ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )
