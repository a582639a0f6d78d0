"""The local platform's Router: a real nginx, changed only by graceful reloads that are confirmed.

Routing is rendered into one nginx configuration:

* the user-facing server (``listen``) proxies to an upstream holding every routable instance of every
  group with a weight above 0, each ``server`` with its group's weight; when nothing is routable it
  answers 503 itself (nginx refuses an empty upstream);
* an optional preview server (``set_preview``) proxies to one group's routable instances on a port of
  its own, like Argo Rollouts' preview service;
* a control server on a loopback port answers ``/zdu/routing`` with the generation number of the
  configuration and what it routes.

Every location passes websockets (``Upgrade``/``Connection`` handed on over HTTP/1.1) and streams
responses unbuffered. nginx retries nothing unless the platform's ``retry`` option says so: a request
whose instance refuses the connection fails with 502 in one attempt, so the probes measure the fleet
and not nginx hiding its failures.

A change writes the new configuration (refused, and the old one kept, unless ``nginx -t`` accepts it),
runs ``nginx -s reload``, then waits until the change is in force: the control server answers the new
generation (so new workers run it) and the workers of the previous generation have closed their
listening sockets (so no new connection can reach the old routing). Only then does the call return, so
the caller may stop an instance that left the router. An instance that turned ready joining a
routing (:meth:`NginxRouter.sync`, nothing else changing) returns once its generation serves: the
previous workers, which nginx's master keeps accepting for 100 ms after it starts the new ones, route
only to instances that still run; the next change, or a question of what nginx routes, waits for
them first.
"""

from __future__ import annotations

import grp
import http.client
import json
import logging
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs
import psutil

from zdu.plugins import (
    WEIGHTS_PER_INSTANCE,
    CanaryRoute,
    PlatformError,
    ProcessIdentity,
    format_address,
    free_port,
    tail,
)
from zdu_local.config import split_address
from zdu_local.nginx import BinaryUpgrade, Nginx
from zdu_local.state import InstanceRecord, RouterRecord, StateStore

__all__ = [
    "AFFINITY_SCOPES",
    "ASSET_PIN_SECONDS",
    "NginxRouter",
    "parse_canary_cookie",
    "parse_canary_header",
    "render_config",
]

logger = logging.getLogger("zdu.local")

CONTROL_PATH = "/zdu/routing"
_IN_FORCE_TIMEOUT = 15.0


def _quote(value: str) -> str:
    """``value`` as an nginx string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _user_directive(nginx: Nginx) -> str:
    """As root, nginx's workers would run as ``nobody``: run them as the owner of the prefix instead."""
    if os.geteuid() != 0:
        return ""
    status = nginx.prefix.stat()
    try:
        user = pwd.getpwuid(status.st_uid).pw_name
        group = grp.getgrgid(status.st_gid).gr_name
    except KeyError:
        user, group = "root", "root"
    return f"user {user} {group};\n"


AFFINITY_COOKIE = "zdu_group"
_COOKIE_ATTRIBUTES = "Path=/; HttpOnly; SameSite=Lax"
#: The scopes of affinity: ``session`` pins a client's every request; ``assets`` only a page's assets.
AFFINITY_SCOPES = ("session", "assets")
#: How long an ``assets`` pin lives: a page's assets are asked for within seconds of the page.
ASSET_PIN_SECONDS = 60
_ASSET_PIN_ATTRIBUTES = f"Path=/assets/; Max-Age={ASSET_PIN_SECONDS}; HttpOnly; SameSite=Lax"
_NOTHING_ROUTABLE = '"no instance is ready to serve this\\n"'
_ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
# The types nginx gives the files of the assets store (it loads no mime.types of its own here).
_ASSET_TYPES = (
    ("text/css", "css"),
    ("application/javascript", "js mjs"),
    ("application/json", "json map"),
    ("image/svg+xml", "svg"),
    ("image/png", "png"),
    ("image/jpeg", "jpg jpeg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/x-icon", "ico"),
    ("font/woff", "woff"),
    ("font/woff2", "woff2"),
    ("font/ttf", "ttf"),
    ("application/wasm", "wasm"),
    ("text/plain", "txt"),
)


def _upstream(name: str, servers: Sequence[tuple[InstanceRecord, int]]) -> str:
    """An upstream of ``servers`` with their weights.

    ``max_fails=0``, as ingress-nginx renders its upstreams by default (``upstream-max-fails: 0``):
    nginx never takes an instance out on its own after a failed request. Routing is zdu's to decide
    (drain, readiness); an instance stopped while still routed keeps failing the requests sent to it
    until it leaves the router, and the figures show it, instead of one failure and ten quiet seconds.
    """
    lines = [f"    upstream {name} {{"]
    lines += [f"        server {record.address} weight={weight} max_fails=0;" for record, weight in servers]
    lines.append("    }")
    return "\n".join(lines)


def _group_upstream(group: str) -> str:
    """The name of the upstream of one group's instances (affinity)."""
    return f"zdu_group_{group}"


def _server(address: str, upstream: str | None) -> str:
    if upstream is None:
        location = f"            return 503 {_NOTHING_ROUTABLE};"
    else:
        location = f"            proxy_pass http://{upstream};"
    return "\n".join(
        [
            "    server {",
            f"        listen {address};",
            "        location / {",
            location,
            "        }",
            "    }",
        ]
    )


def _proxy_location(path: str, upstream: str | None, *, affinity: bool) -> list[str]:
    """A location proxying to ``upstream`` (a name, or ``$variable`` chosen by the affinity maps)."""
    lines = [f"        location {path} {{"]
    if upstream is None:
        lines.append(f"            return 503 {_NOTHING_ROUTABLE};")
    elif upstream.startswith("$"):
        lines += [
            f'            if ({upstream} = "") {{',
            f"                return 503 {_NOTHING_ROUTABLE};",
            "            }",
            f"            proxy_pass http://{upstream};",
        ]
    else:
        lines.append(f"            proxy_pass http://{upstream};")
    if affinity and upstream is not None:
        lines.append("            add_header Set-Cookie $zdu_affinity_cookie;")
    lines.append("        }")
    return lines


def _assets_location(directory: str) -> list[str]:
    """``/assets/`` served by nginx from the assets store: long-cached, 404 for a missing file."""
    lines = [
        "        location /assets/ {",
        f"            alias {_quote(directory.rstrip('/') + '/')};",
        "            types {",
    ]
    lines += [f"                {mime} {extensions};" for mime, extensions in _ASSET_TYPES]
    lines += [
        "            }",
        "            default_type application/octet-stream;",
        "            autoindex off;",
        "            etag on;",
        f'            add_header Cache-Control "{_ASSET_CACHE_CONTROL}";',
        '            add_header X-Zdu-Assets "store";',
        "        }",
    ]
    return lines


def _address_pattern(address: str) -> str:
    """A PCRE matching ``address`` as the last entry of ``$upstream_addr`` (``a, b`` after a retry)."""
    escaped = "".join("\\" + c if not c.isalnum() else c for c in address)
    return f"~(^|\\s){escaped}$"


def _map_key(group: str) -> str:
    """``group`` as an exact source value of a ``map`` (a group called like a map keyword is escaped)."""
    return "\\" + group if group in ("default", "hostnames", "include", "volatile") else group


def _affinity_maps(
    record: RouterRecord, routed: Sequence[InstanceRecord], sticky: Mapping[str, Sequence[InstanceRecord]]
) -> list[str]:
    """The maps of sticky sessions: which group served a response, and where a pinned client goes.

    * ``$zdu_affinity_cookie``: the ``Set-Cookie`` value naming the group of the instance that
      answered (from ``$upstream_addr``), empty when no instance answered (no cookie is set then);
    * ``$zdu_page_upstream``: pages of a client pinned to a group with a weight above 0 and a ready
      instance go to that group; every other request goes by weight;
    * ``$zdu_asset_upstream``: assets of a client pinned to a group that has a ready instance (or one
      in its grace) go to that group, whatever its weight: the page that asks for them came from it.
    """
    weighted = _weighted_target(record, routed) or '""'
    routed_groups = {r.group for r in routed}
    lines = ["    map $upstream_addr $zdu_affinity_cookie {", '        default "";']
    attributes = _ASSET_PIN_ATTRIBUTES if record.affinity_scope == "assets" else _COOKIE_ATTRIBUTES
    for group, members in sticky.items():
        cookie = _quote(f"{AFFINITY_COOKIE}={group}; {attributes}")
        lines += [f"        {_quote(_address_pattern(member.address))} {cookie};" for member in members]
    lines += [
        "    }",
        f"    map $cookie_{AFFINITY_COOKIE} $zdu_page_upstream {{",
        f"        default {weighted};",
    ]
    lines += [
        f"        {_map_key(group)} {_group_upstream(group)};"
        for group in sticky
        if group in routed_groups and record.weights.get(group, 0) > 0
    ]
    lines += [
        "    }",
        f"    map $cookie_{AFFINITY_COOKIE} $zdu_asset_upstream {{",
        f"        default {weighted};",
    ]
    lines += [f"        {_map_key(group)} {_group_upstream(group)};" for group in sticky]
    lines.append("    }")
    return lines


def _asset_pinned_server(record: RouterRecord, weighted: str | None) -> list[str]:
    """The user-facing server while affinity is scoped to assets (see :meth:`NginxRouter.set_affinity`).

    Every request but an asset goes by weight, and its answer names the group that rendered it in a
    cookie sent back with ``/assets/`` requests only, for :data:`ASSET_PIN_SECONDS`; an asset goes to
    the group its cookie names (by weight without one). So the load follows the weights at every
    moment, and a page's assets still come from the version that rendered the page. ``weighted`` is
    where requests by weight go (the users' upstream, or a canary's split).
    """
    lines = ["    server {", f"        listen {record.listen};"]
    if record.assets_dir is not None:
        lines += _assets_location(record.assets_dir)
    else:
        lines += _proxy_location("/assets/", "$zdu_asset_upstream", affinity=False)
    lines += _proxy_location("/", weighted, affinity=True)
    lines.append("    }")
    return lines


def _user_server(record: RouterRecord, routed: Sequence[InstanceRecord], affinity: bool) -> list[str]:
    weighted = _weighted_target(record, routed)
    if affinity and record.affinity_scope == "assets":
        return _asset_pinned_server(record, weighted)
    lines = ["    server {", f"        listen {record.listen};"]
    if record.assets_dir is not None:
        lines += _assets_location(record.assets_dir)
    elif affinity:
        lines += _proxy_location("/assets/", "$zdu_asset_upstream", affinity=True)
    lines += _proxy_location("/", "$zdu_page_upstream" if affinity else weighted, affinity=affinity)
    lines.append("    }")
    return lines


def _routing_document(record: RouterRecord, routed: Sequence[InstanceRecord], retry: bool) -> str:
    document = {
        "generation": record.generation,
        "retries": retry,
        "weights": {group: weight for group, weight in sorted(record.weights.items()) if weight > 0},
        "routed": sorted(r.id for r in routed),
        "preview": record.preview_group,
        "affinity": record.affinity,
        "affinity_scope": record.affinity_scope if record.affinity else None,
        "asset_grace": sorted(record.asset_grace) if record.affinity else [],
        "assets": record.assets_dir is not None,
        "canary": _canary_document(record),
    }
    return json.dumps(document, sort_keys=True)


def _routed(record: RouterRecord, instances: Sequence[InstanceRecord]) -> list[InstanceRecord]:
    joining = set(record.joining)
    return [i for i in instances if i.routable and record.weights.get(i.group, 0) > 0 and i.id not in joining]


def _sticky(record: RouterRecord, instances: Sequence[InstanceRecord]) -> dict[str, list[InstanceRecord]]:
    """The instances of each group's own upstream while affinity is on: ready ones, and those in grace."""
    if not record.affinity:
        return {}
    groups: dict[str, list[InstanceRecord]] = {}
    for instance in instances:
        if instance.routable or instance.id in record.asset_grace:
            groups.setdefault(instance.group, []).append(instance)
    return dict(sorted(groups.items()))


def _joining(record: RouterRecord, instances: Sequence[InstanceRecord]) -> tuple[str, ...]:
    """Ready instances of a weighted group not yet in their group's upstream (affinity on).

    A reload leaves the previous workers accepting connections for a moment beside the new ones.
    Were a new instance to take pages by the same reload that makes its group known, the assets of its
    first pages could reach a previous worker, which knows no such group and routes them by weight: to
    the other version. So :meth:`NginxRouter.sync` puts such instances in their group's upstream (and
    the cookie's map) first, confirmed in force with no previous worker accepting, and sends them
    pages by the next reload.
    """
    return tuple(
        sorted(
            i.id
            for i in instances
            if i.routable and i.id not in record.sticky and record.weights.get(i.group, 0) > 0
        )
    )


def _retry_directives(retry: bool) -> list[str]:
    """``proxy_next_upstream``: one attempt per request, or a failed connection retried elsewhere."""
    if not retry:
        return [
            "    # One attempt per request: a failure is the client's to see (the probes measure the fleet).",
            "    proxy_next_upstream off;",
        ]
    return [
        "    # A request whose instance failed it (refused, cut, timed out) is retried on another one.",
        "    # nginx never retries a non-idempotent request (POST, PATCH, ...) that reached an instance",
        "    # unless 'non_idempotent' is given, which zdu never does.",
        "    proxy_next_upstream error timeout;",
    ]


# -- the canary split (set_canary) --------------------------------------------------------------------

_CANARY_COOKIE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_CANARY_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
_CANARY_VALUE = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


def parse_canary_cookie(text: str) -> tuple[str, str]:
    """``name=value`` as nginx can match it (``$cookie_<name>``); ValueError naming what is wrong."""
    name, sep, value = text.partition("=")
    if not sep or not _CANARY_COOKIE_NAME.match(name) or not _CANARY_VALUE.match(value):
        raise ValueError(
            f"canary cookie {text!r} is not NAME=VALUE (NAME: letters, digits, '_'; VALUE: no spaces, "
            "quotes or ';'), such as 'gitlab_canary=true'"
        )
    return name, value


def parse_canary_header(text: str) -> tuple[str, str]:
    """``Name: value`` as nginx can match it (``$http_<name>``); ValueError naming what is wrong."""
    name, sep, value = text.partition(":")
    value = value.strip()
    if not sep or not _CANARY_HEADER_NAME.match(name.strip()) or not _CANARY_VALUE.match(value):
        raise ValueError(
            f"canary header {text!r} is not 'Name: value' (Name: letters, digits, '-'; value: no spaces "
            "or quotes), such as 'X-Gitlab-Canary: true'"
        )
    return name.strip(), value


def _canary_split(record: RouterRecord, routed: Sequence[InstanceRecord]) -> tuple[list[str], list[str]]:
    """The stable and the canary instances of ``routed`` (ids), while a canary route is set."""
    canary = [r.id for r in routed if r.group == record.canary_group]
    stable = [r.id for r in routed if r.group != record.canary_group]
    return stable, canary


def _canary_entry(record: RouterRecord) -> str:
    """The upstream (or the variable choosing one) the canary split starts from: header, cookie, share."""
    if record.canary_header is not None:
        return "$zdu_canary_upstream"
    if record.canary_cookie is not None:
        return "$zdu_canary_by_cookie"
    if 0 < record.canary_percent < 100:
        return "$zdu_canary_by_share"
    return "zdu_canary" if record.canary_percent >= 100 else "zdu_stable"


def _weighted_target(record: RouterRecord, routed: Sequence[InstanceRecord]) -> str | None:
    """What user requests without affinity go to: an upstream, the canary split's variable, or None."""
    if not routed:
        return None
    if record.canary_group is None:
        return "zdu_users"
    stable, canary = _canary_split(record, routed)
    if not canary:
        return "zdu_stable"
    if not stable:
        return "zdu_canary"
    return _canary_entry(record)


def _weighted_upstreams(record: RouterRecord, routed: Sequence[InstanceRecord]) -> list[str]:
    """The upstreams of weighted user traffic, and with a canary route its split.

    Without a canary: one upstream of every routed instance with its group's weight. With one: the
    stable upstream (every other group, by weight) and the canary upstream, and nginx's
    ``split_clients`` over ``$request_id`` (random per request) sending exactly ``canary_percent``
    of the hash space to the canary, whatever the instance counts; the header, then the cookie, when
    set, send a request to the canary before the share is drawn.
    """
    if not routed:
        return []
    if record.canary_group is None:
        return [_upstream("zdu_users", [(r, record.weights[r.group]) for r in routed])]
    canary = [r for r in routed if r.group == record.canary_group]
    stable = [r for r in routed if r.group != record.canary_group]
    parts = []
    if stable:
        parts.append(_upstream("zdu_stable", [(r, record.weights[r.group]) for r in stable]))
    if canary:
        parts.append(_upstream("zdu_canary", [(r, 1) for r in canary]))
    if not (stable and canary):
        return parts
    percent = record.canary_percent
    by_share = "zdu_canary" if percent >= 100 else "zdu_stable"
    if 0 < percent < 100:
        by_share = "$zdu_canary_by_share"
        parts += [
            '    split_clients "${request_id}" $zdu_canary_by_share {',
            f"        {percent}% zdu_canary;",
            "        * zdu_stable;",
            "    }",
        ]
    by_cookie = by_share
    if record.canary_cookie is not None:
        name, value = parse_canary_cookie(record.canary_cookie)
        by_cookie = "$zdu_canary_by_cookie"
        parts += [
            f"    map $cookie_{name} $zdu_canary_by_cookie {{",
            f"        default {by_share};",
            f"        {_quote(value)} zdu_canary;",
            "    }",
        ]
    if record.canary_header is not None:
        name, value = parse_canary_header(record.canary_header)
        parts += [
            f"    map $http_{name.lower().replace('-', '_')} $zdu_canary_upstream {{",
            f"        default {by_cookie};",
            f"        {_quote(value)} zdu_canary;",
            "    }",
        ]
    return parts


def _canary_document(record: RouterRecord) -> dict[str, object] | None:
    if record.canary_group is None:
        return None
    return {
        "group": record.canary_group,
        "percent": record.canary_percent,
        "cookie": record.canary_cookie,
        "header": record.canary_header,
    }


def render_config(
    nginx: Nginx, record: RouterRecord, instances: Sequence[InstanceRecord], *, retry: bool = False
) -> str:
    """Render the nginx configuration that routes ``instances`` as ``record`` says.

    ``retry``: whether nginx re-sends a request whose connection failed to another instance.
    """
    prefix = nginx.prefix
    routed = _routed(record, instances)
    sticky = _sticky(record, instances)
    parts = [
        "# Generated by zdu (local platform): every change is a graceful reload. Do not edit.",
        _user_directive(nginx) + "worker_processes 1;",
        f"pid {_quote(str(nginx.pid_path))};",
        f"lock_file {_quote(str(prefix / 'logs' / 'nginx.lock'))};",
        f"error_log {_quote(str(nginx.error_log))} notice;",
        "events {\n    worker_connections 4096;\n}",
        "http {",
        "    log_format zdu '$remote_addr [$time_local] \"$request\" $status $body_bytes_sent '",
        "                   'upstream=$upstream_addr upstream_status=$upstream_status rt=$request_time "
        "msec=$msec';",
        f"    access_log {_quote(str(prefix / 'logs' / 'access.log'))} zdu buffer=32k flush=1s;",
    ]
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        parts.append(f"    {kind}_temp_path {_quote(str(nginx.temp_path / kind))};")
    parts += [
        "    default_type application/octet-stream;",
        "    server_tokens off;",
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        '' close;",
        "    }",
        "    proxy_set_header Host $http_host;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_set_header X-Forwarded-Host $host;",
        "    proxy_set_header X-Forwarded-Port $server_port;",
        # Websockets (the app's /-/cable) and long downloads pass through every location: HTTP/1.1 to
        # the instances, the client's Upgrade handed on, and responses streamed as they come.
        "    proxy_http_version 1.1;",
        "    proxy_set_header Upgrade $http_upgrade;",
        "    proxy_set_header Connection $connection_upgrade;",
        "    proxy_buffering off;",
        *_retry_directives(retry),
        "    proxy_connect_timeout 5s;",
        "    proxy_read_timeout 300s;",
        "    proxy_send_timeout 300s;",
    ]
    host, _port = split_address(record.listen)
    parts += _weighted_upstreams(record, routed)
    if record.affinity:
        parts += [
            _upstream(_group_upstream(group), [(r, 1) for r in members]) for group, members in sticky.items()
        ]
        parts += _affinity_maps(record, routed, sticky)
    parts += _user_server(record, routed, record.affinity)
    if record.preview_group is not None and record.preview_port is not None:
        previewed = [i for i in instances if i.routable and i.group == record.preview_group]
        preview = None
        if previewed:
            preview = "zdu_preview"
            parts.append(_upstream(preview, [(r, 1) for r in previewed]))
        parts.append(_server(format_address(host, record.preview_port), preview))
    parts += [
        "    server {",
        f"        listen {format_address('127.0.0.1', record.control_port)};",
        "        access_log off;",
        f"        location = {CONTROL_PATH} {{",
        "            default_type application/json;",
        f"            return 200 '{_routing_document(record, routed, retry)}\\n';",
        "        }",
        "        location / {",
        "            return 404;",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(parts) + "\n"


class NginxRouter:
    """The :class:`zdu.platform.Router` of the local platform: a real nginx in front of the instances.

    Built by :class:`~zdu_local.platform.LocalPlatform`, with which it shares the fleet's state: the
    platform says which instances are routable, the router which groups get traffic and how much.

    :param store: the fleet's state (``state.json``).
    :param nginx: the nginx server to configure.
    :param listen: where nginx is to listen for users (``host:port``; port 0: a free port, chosen when
        the fleet comes up and kept for its life).
    :param assets_dir: the directory of the assets store, served as ``/assets/`` by :meth:`route_assets`
        (``None``: the platform has no assets store).
    :param affinity_grace: seconds the last instances of a group keep serving its assets to the clients
        pinned to it after they left the router, while affinity is on (see :meth:`sync`).
    :param retry: whether nginx re-sends a request whose connection to an instance failed to another
        instance (``proxy_next_upstream error timeout``); off, every request gets one attempt.
    :param settle: called with the instances entering their asset grace, once they take no page any
        more; returns when the requests they had in flight are answered (the platform's drain wait),
        so that the grace counts from the last page they rendered, however slow it was.
    """

    def __init__(
        self,
        store: StateStore,
        nginx: Nginx,
        listen: str,
        *,
        assets_dir: Path | None = None,
        affinity_grace: float = 0.0,
        retry: bool = False,
        settle: Callable[[Sequence[InstanceRecord]], None] | None = None,
    ) -> None:
        self._store = store
        self._nginx = nginx
        self._listen = listen
        self._assets_dir = assets_dir
        self._affinity_grace = affinity_grace
        self._retry = retry
        self._settle = settle
        # nginx workers of the previous generation still accepting connections after a change that
        # only added instances (see _only_adds): the next change or question waits for them first.
        self._retiring: list[psutil.Process] = []
        # the generation this object last found or put in force as it renders it (its own options)
        self._rendered: int | None = None

    @property
    def retries(self) -> bool:
        """Whether this router retries a failed request on another instance (the platform's ``retry``).

        False: one attempt per request, so what a client measures through the router is the fleet's
        own behaviour. The configuration in force says the same in its routing document (``retries``).
        """
        return self._retry

    @property
    def nginx(self) -> Nginx:
        """The nginx server it configures."""
        return self._nginx

    @property
    def record(self) -> RouterRecord:
        """What the router last put in force (raises PlatformError when the fleet is not up)."""
        record = self._store.state.router
        if record is None:
            raise PlatformError("the local fleet is not up: run 'zdu local up' first")
        return record

    @property
    def url(self) -> str:
        """The URL of the user-facing listener: ``http://host:port``.

        Before the fleet is up, the configured address (whose port may still be 0, not chosen yet).
        """
        record = self._store.state.router
        return f"http://{record.listen if record else self._listen}"

    @property
    def preview_url(self) -> str | None:
        """The URL of the preview listener, when a group is previewed."""
        record = self._store.state.router
        if record is None or record.preview_group is None or record.preview_port is None:
            return None
        host, _port = split_address(record.listen)
        return f"http://{format_address(host, record.preview_port)}"

    def master_pid(self) -> int | None:
        """Return the pid of nginx's master process (unchanged by reloads); None when nginx does not run."""
        master = self._nginx.master()
        return master.pid if master else None

    def running(self) -> bool:
        """Whether nginx runs."""
        return self._nginx.master() is not None

    def weights(self) -> dict[str, int]:
        """Return the weight of every group known (the fleet's and those given one); 0: not routed."""
        state = self._store.state
        weights = dict.fromkeys(state.groups, 0)
        if state.router is not None:
            weights.update(state.router.weights)
        return weights

    def routed(self) -> frozenset[str]:
        """Return the ids of the instances the configuration in force sends user traffic to."""
        record = self._store.state.router
        return frozenset(record.routed) if record else frozenset()

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Route user traffic by ``weights`` (groups left out get 0); return once it is in force."""
        for group, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise PlatformError(f"weight of group {group!r} must be an integer >= 0, got {weight!r}")
        cleaned = {group: weight for group, weight in sorted(weights.items()) if weight > 0}
        with self._store.locked():
            if cleaned != self.record.weights:
                logger.info("routing user traffic by weights %s", cleaned or "{} (nothing routed)")
            self._apply(attrs.evolve(self.record, weights=cleaned))

    def verify_weights(self, weights: Mapping[str, int]) -> bool:
        """Whether nginx, as it runs now, routes by ``weights`` (asked of nginx's control server)."""
        record = self._store.state.router
        if record is None:
            return False
        self._retire()
        wanted = {group: weight for group, weight in weights.items() if weight > 0}
        document = self._running_routing(record)
        if document is None:
            return False
        return bool(document.get("generation") == record.generation and document.get("weights") == wanted)

    def check_affinity(self) -> None:
        """Sticky sessions always work here: nginx routes by a cookie map of its own."""

    @property
    def weight_semantics(self) -> str:
        """``per-instance``: every ready instance of a group gets the group's weight (nginx upstreams)."""
        return WEIGHTS_PER_INSTANCE

    def set_canary(
        self, group: str | None, percent: int = 0, cookie: str | None = None, header: str | None = None
    ) -> None:
        """Split ``percent`` of user requests off to ``group`` (nginx ``split_clients``); None removes it.

        The share is of requests, whatever the instance counts; ``cookie`` (``name=value``) and
        ``header`` (``Name: value``) send a request to the canary whatever the share. The canary group
        is routed (given weight 1 when it had none); the other groups share the rest by their weights.
        Removing the split leaves the weights as they are. With affinity on, a client that a canary
        instance served is pinned to the canary group like any other. Returns once in force.
        """
        if group is not None:
            if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
                raise PlatformError(f"canary percent must be an integer from 0 to 100, got {percent!r}")
            try:
                if cookie is not None:
                    parse_canary_cookie(cookie)
                if header is not None:
                    parse_canary_header(header)
            except ValueError as error:
                raise PlatformError(str(error)) from error
        with self._store.locked():
            record = self.record
            if group is None:
                changed = attrs.evolve(
                    record, canary_group=None, canary_percent=0, canary_cookie=None, canary_header=None
                )
            else:
                if group not in self._store.state.groups:
                    raise PlatformError(
                        f"cannot route a canary share to {group!r}: the fleet has no such group"
                    )
                weights = dict(record.weights)
                weights[group] = weights.get(group) or 1
                changed = attrs.evolve(
                    record,
                    weights=weights,
                    canary_group=group,
                    canary_percent=percent,
                    canary_cookie=cookie,
                    canary_header=header,
                )
            if changed != record:
                logger.info("canary route: %s", _canary_document(changed) or "none")
            self._apply(changed)

    def canary(self) -> CanaryRoute | None:
        """The canary route the router last put in force, or None."""
        record = self._store.state.router
        if record is None or record.canary_group is None:
            return None
        return CanaryRoute(
            record.canary_group, record.canary_percent, record.canary_cookie, record.canary_header
        )

    def set_preview(self, group: str | None) -> str | None:
        """Expose ``group``'s ready instances on the preview port and return its URL; None removes it."""
        with self._store.locked():
            return self._set_preview(group)

    def _set_preview(self, group: str | None) -> str | None:
        record = self.record
        if group is None:
            if record.preview_group is not None:
                logger.info("removing the preview of %s", record.preview_group)
                self._apply(attrs.evolve(record, preview_group=None, preview_port=None))
            return None
        if group not in self._store.state.groups:
            raise PlatformError(f"cannot preview group {group!r}: the fleet has no such group")
        port = record.preview_port
        if port is None:
            host, _port = split_address(record.listen)
            port = free_port(host)
        if record.preview_group != group or record.preview_port != port:
            logger.info("previewing %s on port %d", group, port)
            self._apply(attrs.evolve(record, preview_group=group, preview_port=port))
        return self.preview_url

    def set_affinity(self, enabled: bool, scope: str = "session") -> None:
        """Switch affinity on or off (a confirmed graceful reload; nothing when already so).

        ``scope="session"`` (sticky sessions): nginx names the group that answered in a cookie
        (``zdu_group=<group>``, for the browser's session) and routes by it: a page goes to the
        client's group while that group has a weight above 0 and a ready instance; an asset
        (``/assets/...``) goes to it while it has a ready instance, whatever its weight, because the
        page that asks for it came from that group. Every other request (no cookie, a group unknown or
        gone) is routed by weight, and its answer pins the client anew. The load follows the clients,
        not the weights: as a group shrinks, its last instances keep all of its clients.

        ``scope="assets"``: only assets are pinned. Every other request goes by weight; its answer sets
        the cookie with ``Path=/assets/`` and ``Max-Age`` :data:`ASSET_PIN_SECONDS`, so the browser
        sends it with the page's assets only, and they go to the group that rendered the page (by
        weight without the cookie). The next page goes by weight again and re-pins the assets.

        With either scope a group whose last instances leave keeps them for its pinned assets for the
        platform's ``affinity_grace`` (see :meth:`sync`). The setting is kept in ``state.json``, so a
        later command finds it. An unknown scope raises PlatformError.
        """
        if scope not in AFFINITY_SCOPES:
            raise PlatformError(f"affinity scope must be one of {', '.join(AFFINITY_SCOPES)}, got {scope!r}")
        with self._store.locked():
            record = self.record
            if record.affinity != enabled or (enabled and record.affinity_scope != scope):
                logger.info("switching affinity %s", f"on (scope {scope})" if enabled else "off")
            self._apply(attrs.evolve(record, affinity=enabled, affinity_scope=scope, asset_grace=()))

    def route_assets(self, enabled: bool) -> None:
        """Serve ``/assets/`` from the assets store (nginx reads the files itself), or stop doing so.

        Raises PlatformError when the platform has no assets store, or nothing was published to it.
        """
        with self._store.locked():
            record = self.record
            directory: str | None = None
            if enabled:
                if self._assets_dir is None:
                    raise PlatformError(
                        "the local platform has no assets store (platform.assets_command = [])"
                    )
                if not self._assets_dir.is_dir():
                    raise PlatformError(
                        "cannot route /assets/ to the assets store: nothing is published in "
                        f"{self._assets_dir}"
                    )
                directory = str(self._assets_dir)
            if record.assets_dir != directory:
                logger.info("serving /assets/ from %s", directory or "the instances")
            self._apply(attrs.evolve(record, assets_dir=directory))

    def routing(self) -> dict[str, object] | None:
        """What the running nginx says it routes (its control server's document); None when unreachable.

        ``generation``, ``retries`` (whether nginx retries a failed request on another instance),
        ``weights``, ``routed`` (instance ids), ``preview``, ``affinity``, ``asset_grace`` (instance ids)
        ``assets`` (whether ``/assets/`` is served from the store) and ``canary`` (the canary route:
        group, percent, cookie, header; null without one).
        """
        record = self._store.state.router
        if record is None:
            return None
        self._retire()
        return self._running_routing(record)

    def remove_managed_routes(self) -> None:
        """Remove every route added for an upgrade (preview listener, affinity, assets route). Idempotent."""
        with self._store.locked():
            record = self._store.state.router
            if record is None:
                return
            if record.preview_group is not None or record.affinity or record.assets_dir is not None:
                logger.info("removing the routes managed for the upgrade")
            self._apply(
                attrs.evolve(
                    record,
                    preview_group=None,
                    preview_port=None,
                    affinity=False,
                    asset_grace=(),
                    assets_dir=None,
                )
            )

    def start(self) -> None:
        """Start nginx (only when the fleet comes up); choose its ports the first time."""
        with self._store.locked():
            self._start()

    def _start(self) -> None:
        self._nginx.prepare()
        record = self._store.state.router
        if record is None:
            if self.running():
                logger.warning("an nginx of a forgotten fleet runs in %s: stopping it", self._nginx.prefix)
                self._nginx.stop(None)
            host, port = split_address(self._listen)
            record = RouterRecord(
                listen=format_address(host, port or free_port(host)), control_port=free_port("127.0.0.1")
            )
        elif self.running():
            return
        record = attrs.evolve(record, generation=record.generation + 1)
        self._nginx.install(self._render(record, self._store.state.instances))
        master = self._nginx.start()
        self._wait_in_force(record, old_workers=[])
        self._save(attrs.evolve(record, master_pid=master.pid, master_started_at=master.started_at))

    def stop(self) -> None:
        """Stop nginx (only when the whole fleet stops)."""
        record = self._store.state.router
        master = None
        if record is not None and record.master_pid is not None and record.master_started_at is not None:
            master = ProcessIdentity(record.master_pid, record.master_started_at)
        self._nginx.stop(master)

    def sync(self) -> None:
        """Put in force the routing of the fleet as it is now (after instances came or left).

        While affinity is on, a group whose last ready instances leave (they are being drained) keeps
        them for its pinned clients' assets for ``affinity_grace`` seconds first: they take no page
        and no new client any more, but a page that group rendered just before still gets its assets
        from it. Only then does the routing drop them, and the caller drains and stops them.

        While affinity is on, an instance that became ready joins its group's upstream (the assets of
        pages it will render) by one reload, and takes pages only by the next one (see ``_joining``).
        """
        with self._store.locked():
            record = self.record
            instances = self._store.state.instances
            leaving: tuple[str, ...] = ()
            if record.affinity and self._affinity_grace > 0:
                ready_groups = {i.group for i in instances if i.routable}
                leaving = tuple(
                    sorted(
                        i.id
                        for i in instances
                        if i.id in record.sticky and not i.routable and i.group not in ready_groups
                    )
                )
            joining = _joining(record, instances) if record.affinity else ()
            if leaving or joining:
                if leaving:
                    logger.info(
                        "keeping %s for the assets of clients pinned to their group for %gs",
                        ", ".join(leaving),
                        self._affinity_grace,
                    )
                if joining:
                    logger.debug("%s join their groups' upstreams before they take pages", ", ".join(joining))
                self._apply(attrs.evolve(record, asset_grace=leaving, joining=joining))
            if leaving:
                if self._settle is not None:
                    self._settle([i for i in instances if i.id in leaving])
                self._hold_grace(self._affinity_grace)
            self._apply(attrs.evolve(self.record, asset_grace=(), joining=()), joins_early=True)

    def upgrade(self, program: str | None = None, *, timeout: float = 30.0) -> BinaryUpgrade:
        """Replace nginx itself (a new binary or version) under traffic, without dropping a connection.

        :meth:`Nginx.upgrade`: a new master started beside the old one by USR2 on the same listening
        sockets, the old workers retired by WINCH (they finish their requests, long downloads and
        websockets), the old master by QUIT. Returns once the new master serves the configuration in
        force (its control server answers the same generation) and the old workers accept nothing;
        the old master exits later, after its last connection. The state remembers the new master.

        :param program: the nginx program to run from now on; default: the platform's ``nginx``
            (after a package upgrade replaced it, the same path runs the new version).
        """
        with self._store.locked():
            self._retire()
            record = self.record
            result = self._nginx.upgrade(program, timeout=timeout)
            if not self._serves(record):
                raise PlatformError(
                    f"nginx's new master (pid {result.new.pid}) does not serve configuration "
                    f"generation {record.generation}"
                )
            self._save(
                attrs.evolve(record, master_pid=result.new.pid, master_started_at=result.new.started_at)
            )
            return result

    def _apply(self, record: RouterRecord, *, joins_early: bool = False) -> None:
        """Put ``record``'s routing in force by a confirmed graceful reload (nothing when it already is).

        With ``joins_early`` (instances that turned ready joining, from :meth:`sync`), a change that
        only adds instances returns once its generation serves (see :func:`_only_adds`).
        """
        with self._store.locked():
            self._reload(record, joins_early=joins_early)

    def _reload(self, record: RouterRecord, *, joins_early: bool = False) -> None:
        self._retire()
        instances = self._store.state.instances
        if self._render(record, instances) == self._nginx.current() and self._serves(record):
            self._rendered = record.generation
            self._save(record)
            return
        master = self._nginx.master()
        if master is None:
            raise PlatformError(f"nginx does not run (prefix {self._nginx.prefix}): run 'zdu local up'")
        record = attrs.evolve(record, generation=self.record.generation + 1)
        only_adds = (
            joins_early
            and self._rendered == self.record.generation
            and _only_adds(self.record, record, instances)
        )
        previous = self._nginx.install(self._render(record, instances))
        old_workers = self._nginx.workers()
        try:
            self._nginx.reload()
            self._wait_in_force(record, [] if only_adds else old_workers)
        except PlatformError:
            self._nginx.restore(previous)
            raise
        if self._nginx.master() != master:
            raise PlatformError(f"nginx's master process changed during a reload (was pid {master.pid})")
        if only_adds:
            self._retiring = old_workers
        self._rendered = record.generation
        self._save(record)

    def _retire(self) -> None:
        """Wait until the workers a change that only added instances left accepting have stopped.

        Such a change returns as soon as its generation serves (nothing it routed before stops
        being routed); whatever comes next (another change, a question of what nginx routes) finds
        only the new generation's workers.
        """
        retiring, self._retiring = self._retiring, []
        deadline = time.monotonic() + _IN_FORCE_TIMEOUT
        while _still_listening(retiring):
            if time.monotonic() > deadline:
                logger.warning("nginx's previous workers still hold their listening sockets after a reload")
                return
            time.sleep(0.002)

    def _render(self, record: RouterRecord, instances: Sequence[InstanceRecord]) -> str:
        return render_config(self._nginx, record, instances, retry=self._retry)

    def _serves(self, record: RouterRecord) -> bool:
        """Whether the running nginx serves the configuration of ``record``'s generation."""
        document = self._running_routing(record)
        return document is not None and document.get("generation") == record.generation

    def _hold_grace(self, seconds: float) -> None:
        """Wait while instances in their grace serve their group's assets (a seam for tests)."""
        time.sleep(seconds)

    def _save(self, record: RouterRecord) -> None:
        instances = self._store.state.instances
        routed = tuple(sorted(r.id for r in _routed(record, instances)))
        sticky = tuple(sorted(r.id for members in _sticky(record, instances).values() for r in members))
        self._store.update(router=attrs.evolve(record, routed=routed, sticky=sticky))

    def _running_routing(self, record: RouterRecord) -> dict[str, object] | None:
        connection = http.client.HTTPConnection("127.0.0.1", record.control_port, timeout=2.0)
        try:
            connection.request("GET", CONTROL_PATH)
            response = connection.getresponse()
            if response.status != 200:
                return None
            document = json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            connection.close()
        return document if isinstance(document, dict) else None

    def _wait_in_force(self, record: RouterRecord, old_workers: Sequence[psutil.Process]) -> None:
        """Wait until nginx serves ``record``'s generation and no old worker accepts connections."""
        deadline = time.monotonic() + _IN_FORCE_TIMEOUT
        while not self._serves(record):
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"nginx did not put configuration generation {record.generation} in force within "
                    f"{_IN_FORCE_TIMEOUT:.0f}s: {tail(self._nginx.error_log, 3)}"
                )
            time.sleep(0.002)
        while _still_listening(old_workers):
            if time.monotonic() > deadline:
                # The new configuration is in force (it answers); this is unexpected, not fatal.
                logger.warning("nginx's previous workers still hold their listening sockets after a reload")
                break
            time.sleep(0.01)
        logger.debug("nginx configuration generation %d in force", record.generation)


def _only_adds(before: RouterRecord, after: RouterRecord, instances: Sequence[InstanceRecord]) -> bool:
    """Whether going from ``before`` to ``after`` only adds instances to the routing (no affinity).

    Such a change needs no wait for the previous workers to stop accepting: what they still route by
    for the moment nginx keeps them (its master lets new workers start for 100 ms before it retires
    the old ones) is the routing before, and every instance of it is still routed and running. A
    routing of no instance (nginx itself answers 503) is not such a before. A change
    that takes an instance out (the caller may stop it next), changes weights between instances that
    stay (their shares among themselves), or touches affinity, previews, canaries or assets waits.
    """
    if before.affinity or after.affinity or not before.routed:  # routing nothing, nginx answers 503
        return False
    unchanged = attrs.evolve(after, generation=before.generation, routed=before.routed, sticky=before.sticky)
    if attrs.evolve(unchanged, weights=before.weights) != before:
        return False
    now = {i.id for i in _routed(after, instances)}
    if not set(before.routed) < now:
        return False
    # the groups routed before keep their shares among themselves (weights scaled alike, or unchanged)
    previous = sorted({i.group for i in instances if i.id in before.routed})
    if not previous:
        return True
    first = previous[0]
    return all(
        before.weights.get(g, 0) * after.weights.get(first, 0)
        == after.weights.get(g, 0) * before.weights.get(first, 0)
        for g in previous
    )


def _listening_pids() -> set[int] | None:
    """The pids holding a listening TCP socket, asked of the kernel by ``ss`` (netlink); None without it.

    Reading the TCP table (``/proc/net/tcp``, what psutil does) costs as much as the machine has
    connections, seconds on a host full of TIME_WAIT entries; the kernel filters listening sockets
    itself for ``ss``.
    """
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        done = subprocess.run([ss, "-Hltnp"], capture_output=True, text=True, timeout=5.0, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return {int(pid) for pid in re.findall(r"pid=(\d+)", done.stdout)}


def _still_listening(workers: Sequence[psutil.Process]) -> bool:
    """Whether any of ``workers`` (nginx workers of a previous generation) still holds a listening socket."""
    if not workers:
        return False
    holders = _listening_pids()
    if holders is None:
        return any(_listens(worker) for worker in workers)
    return any(worker.pid in holders and _alive(worker) for worker in workers)


def _alive(worker: psutil.Process) -> bool:
    try:
        return worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _listens(worker: psutil.Process) -> bool:
    """Whether ``worker`` (an nginx worker) still holds a listening socket."""
    try:
        if worker.status() == psutil.STATUS_ZOMBIE:
            return False
        return any(c.status == psutil.CONN_LISTEN for c in worker.net_connections(kind="tcp"))
    except psutil.Error:
        return False
