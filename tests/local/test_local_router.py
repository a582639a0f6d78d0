"""The nginx router: real nginx, changed only by graceful reloads that are confirmed in force."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from collections.abc import Callable

import attrs
import pytest

import zdu_local.router
from tests.local import ws_app
from tests.local.conftest import get, pid_alive
from tests.nginx_check import nginx_t
from zdu.errors import PlatformError
from zdu.model import Version
from zdu.platform import PlatformEnv, Router
from zdu_demo.demo_app import asset_hash
from zdu_local.platform import LocalPlatform
from zdu_local.state import InstanceRecord, RouterRecord

Get = Callable[..., tuple[int, dict[str, str], bytes]]
OLD = Version.parse("16.5.0")
NEW = Version.parse("16.6.0")


def test_is_a_router(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform(replicas=1)
    assert isinstance(platform.router, Router)
    assert platform.router.url == "http://127.0.0.1:0"  # not chosen before the fleet is up
    url = platform.up(OLD)
    assert platform.router.url == url and not url.endswith(":0")


def test_generated_config_passes_nginx_t(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform(replicas=2)
    platform.up(OLD)
    platform.scale(platform.group_name(NEW), NEW, 1)
    platform.router.set_weights({platform.group_name(OLD): 3, platform.group_name(NEW): 1})
    platform.router.set_preview(platform.group_name(NEW))
    nginx = platform.router.nginx
    text = nginx.conf_path.read_text()
    assert "weight=3 max_fails=0;" in text and "weight=1 max_fails=0;" in text
    assert "proxy_next_upstream off;" in text
    result = nginx_t(platform)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_master_pid_is_unchanged_across_reloads(
    make_platform: Callable[..., LocalPlatform], http_get: Get
) -> None:
    platform = make_platform(replicas=2)
    url = platform.up(OLD)
    router = platform.router
    master = router.master_pid()
    assert master is not None
    old, new = platform.group_name(OLD), platform.group_name(NEW)
    generation = router.record.generation
    steps: list[Callable[[], object]] = [
        lambda: platform.scale(new, NEW, 2),
        lambda: router.set_weights({old: 1, new: 1}),
        lambda: router.set_weights({new: 100}),
        lambda: platform.scale(old, OLD, 1),
        lambda: router.set_preview(old),
        lambda: router.remove_managed_routes(),
        lambda: platform.remove_group(old),
    ]
    for step in steps:
        step()
        assert router.master_pid() == master
        assert http_get(url + "/")[0] == 200
    assert router.record.generation >= generation + 4  # scaling a group of weight 0 needs no reload
    assert router.verify_weights({new: 100})
    assert http_get(url + "/")[1]["X-Demo-Version"] == "16.6.0"


def test_set_weights_is_idempotent_without_reload(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform(replicas=1)
    platform.up(OLD)
    group = platform.group_name(OLD)
    generation = platform.router.record.generation
    platform.router.set_weights({group: 100})
    assert platform.router.record.generation == generation


def test_weights_split_traffic_between_versions(
    make_platform: Callable[..., LocalPlatform], http_get: Get
) -> None:
    platform = make_platform(replicas=1)
    url = platform.up(OLD)
    old, new = platform.group_name(OLD), platform.group_name(NEW)
    platform.scale(new, NEW, 1)
    assert {http_get(url + "/")[1]["X-Demo-Version"] for _ in range(10)} == {"16.5.0"}
    platform.router.set_weights({old: 1, new: 1})
    assert platform.router.weights() == {old: 1, new: 1}
    assert {http_get(url + "/")[1]["X-Demo-Version"] for _ in range(20)} == {"16.5.0", "16.6.0"}
    assert platform.router.verify_weights({old: 1, new: 1})
    assert not platform.router.verify_weights({old: 1})
    assert not platform.router.verify_weights({old: 1, new: 2})
    platform.router.set_weights({new: 5})
    assert platform.router.weights() == {old: 0, new: 5}
    assert {http_get(url + "/")[1]["X-Demo-Version"] for _ in range(10)} == {"16.6.0"}
    assert [i.routed for g in platform.groups() for i in g.instances] == [False, True]


def test_nothing_routable_answers_503(make_platform: Callable[..., LocalPlatform], http_get: Get) -> None:
    platform = make_platform(replicas=1)
    url = platform.up(OLD)
    platform.router.set_weights({})
    assert http_get(url + "/")[0] == 503
    assert "upstream zdu_users" not in platform.router.nginx.conf_path.read_text()
    platform.router.set_weights({platform.group_name(OLD): 100})
    assert http_get(url + "/")[0] == 200


def test_refused_config_is_not_applied(
    make_platform: Callable[..., LocalPlatform], http_get: Get, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = make_platform(replicas=1)
    url = platform.up(OLD)
    group = platform.group_name(OLD)
    router = platform.router
    before = router.nginx.conf_path.read_text()
    master, generation = router.master_pid(), router.record.generation
    render = zdu_local.router.render_config
    monkeypatch.setattr(
        zdu_local.router,
        "render_config",
        lambda *args, **kwargs: render(*args, **kwargs).replace("worker_processes", "bogus"),
    )
    with pytest.raises(PlatformError, match=r'nginx refused the configuration: .*unknown directive "bogus"'):
        router.set_weights({group: 7})
    assert router.nginx.conf_path.read_text() == before
    assert (router.master_pid(), router.record.generation) == (master, generation)
    assert router.weights() == {group: 100}
    assert router.verify_weights({group: 100})
    assert http_get(url + "/")[0] == 200


def test_preview_exposes_one_group(make_platform: Callable[..., LocalPlatform], http_get: Get) -> None:
    platform = make_platform(replicas=1)
    url = platform.up(OLD)
    new = platform.group_name(NEW)
    platform.scale(new, NEW, 1)
    preview = platform.router.set_preview(new)
    assert preview is not None and preview != url
    assert platform.router.set_preview(new) == preview  # idempotent
    assert http_get(preview + "/")[1]["X-Demo-Version"] == "16.6.0"
    assert http_get(url + "/")[1]["X-Demo-Version"] == "16.5.0"
    platform.router.remove_managed_routes()
    platform.router.remove_managed_routes()
    with pytest.raises(ConnectionRefusedError):
        http_get(preview + "/")
    assert platform.router.set_preview(None) is None
    with pytest.raises(PlatformError, match="no such group"):
        platform.router.set_preview("v9-9-9")


def test_bad_weight_is_refused(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform(replicas=1)
    platform.up(OLD)
    with pytest.raises(PlatformError, match="must be an integer >= 0"):
        platform.router.set_weights({platform.group_name(OLD): -1})


def request(
    url: str, path: str, group: str | None = None
) -> tuple[int, str | None, str | None, dict[str, str]]:
    """GET ``path`` as a client pinned to ``group``: status, version, the group it pins to, headers."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", path, headers={"Cookie": f"zdu_group={group}"} if group else {})
        response = connection.getresponse()
        response.read()
        headers = dict(response.getheaders())
    finally:
        connection.close()
    cookie = headers.get("Set-Cookie")
    pinned = cookie.split(";", 1)[0].removeprefix("zdu_group=") if cookie else None
    if cookie:
        assert cookie.endswith("; Path=/; HttpOnly; SameSite=Lax")
    return response.status, headers.get("X-Demo-Version"), pinned, headers


def asset(version: Version) -> str:
    return f"/assets/application-{asset_hash(str(version))}.js"


def test_affinity_keeps_a_client_on_the_group_that_served_it(
    make_platform: Callable[..., LocalPlatform],
) -> None:
    platform = make_platform(replicas=1)
    url = platform.up(OLD)
    old, new = platform.group_name(OLD), platform.group_name(NEW)
    router = platform.router
    assert request(url, "/")[2] is None  # off: no cookie
    master = router.master_pid()
    router.set_affinity(True)
    generation = router.record.generation
    router.set_affinity(True)  # idempotent: no reload
    assert router.record.generation == generation
    assert request(url, "/")[1:3] == ("16.5.0", old)  # a new client is pinned where it landed
    platform.scale(new, NEW, 1)
    router.set_weights({old: 1, new: 1})
    assert {request(url, "/")[1:3] for _ in range(10)} == {("16.5.0", old), ("16.6.0", new)}
    for group, version in ((old, "16.5.0"), (new, "16.6.0")):
        assert {request(url, "/", group)[1:3] for _ in range(8)} == {(version, group)}
        assert {request(url, asset(Version.parse(version)), group)[0] for _ in range(4)} == {200}
    # a group unknown to the router: routed by weight, and pinned anew
    assert request(url, "/", "v1-0-0")[2] in (old, new)
    # old out of the router (weight 0): its clients' pages move, the assets of its pages still come from it
    router.set_weights({new: 1})
    assert request(url, "/", old)[1:3] == ("16.6.0", new)
    assert request(url, asset(OLD), old)[:3] == (200, "16.5.0", old)
    # old gone: its clients' assets are routed by weight too
    platform.remove_group(old)
    assert request(url, asset(OLD), old)[:3] == (404, "16.6.0", None)  # an error pins no one
    # off: by weight, no cookie, however the client is pinned
    platform.scale(old, OLD, 1)
    router.set_weights({old: 1, new: 1})
    router.set_affinity(False)
    assert {request(url, "/", old)[1] for _ in range(10)} == {"16.5.0", "16.6.0"}
    assert request(url, "/", old)[2] is None
    assert router.master_pid() == master


def test_affinity_is_kept_in_the_state_for_the_next_command(
    make_platform: Callable[..., LocalPlatform], env: PlatformEnv
) -> None:
    platform = make_platform(replicas=1)
    platform.up(OLD)
    platform.router.set_affinity(True)
    later = LocalPlatform(platform.config, env)
    assert later.router.record.affinity
    assert later.router.routing() == platform.router.routing()
    served = later.router.routing()
    assert served is not None and served["affinity"] is True
    later.router.set_affinity(False)
    assert not platform.router.record.affinity


def test_the_last_instances_of_a_group_keep_serving_its_assets_for_a_grace(
    make_platform: Callable[..., LocalPlatform], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = make_platform(replicas=1, affinity_grace=0.5)
    url = platform.up(OLD)
    old, new = platform.group_name(OLD), platform.group_name(NEW)
    platform.scale(new, NEW, 1)
    platform.router.set_weights({old: 1, new: 1})
    platform.router.set_affinity(True)
    seen: list[tuple[object, ...]] = []

    def during_the_grace(seconds: float) -> None:
        # the old instance left the router: no page, no new client; its group's assets, yes
        served = platform.router.routing()
        assert served is not None
        seen.append((seconds, served["asset_grace"], served["routed"]))
        seen.append(request(url, "/", old)[1:3])
        seen.append(request(url, asset(OLD), old)[:3])
        seen.append(request(url, asset(OLD))[:3])  # not pinned: by weight

    monkeypatch.setattr(platform.router, "_hold_grace", during_the_grace)
    platform.scale(old, OLD, 0)
    (old_instance,) = [f"{old}-1"]
    assert seen == [
        (0.5, [old_instance], [f"{new}-2"]),
        ("16.6.0", new),
        (200, "16.5.0", old),
        (404, "16.6.0", None),
    ]
    served = platform.router.routing()
    assert served is not None and served["asset_grace"] == []
    assert request(url, asset(OLD), old)[:3] == (404, "16.6.0", None)


def test_route_assets_serves_every_published_version_from_the_store(
    make_platform: Callable[..., LocalPlatform],
) -> None:
    platform = make_platform(replicas=1)
    url = platform.up(OLD)
    router = platform.router
    with pytest.raises(PlatformError, match="nothing is published"):
        router.route_assets(True)
    assert platform.assets is not None
    platform.assets.publish(OLD)
    platform.assets.publish(NEW)
    router.route_assets(True)
    router.route_assets(True)
    for version in (OLD, NEW):  # the instances (all of OLD) could not serve NEW's assets
        for suffix, content_type in (("js", "application/javascript"), ("css", "text/css")):
            status, served_by, _, headers = request(
                url, f"/assets/application-{asset_hash(str(version))}.{suffix}"
            )
            assert (status, served_by, headers["Content-Type"]) == (200, None, content_type)
            assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert headers["X-Zdu-Assets"] == "store"
    status, _, _, headers = request(url, "/assets/application-0000000000000000.js")
    assert status == 404 and "Cache-Control" not in headers
    assert request(url, "/")[:2] == (200, "16.5.0")  # pages still come from the instances
    served = router.routing()
    assert served is not None and served["assets"] is True
    router.route_assets(False)
    assert request(url, asset(NEW))[:2] == (404, "16.5.0")
    assert request(url, asset(OLD))[:2] == (200, "16.5.0")


def test_route_assets_is_refused_without_a_store(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform(replicas=1, assets_command=[])
    platform.up(OLD)
    with pytest.raises(PlatformError, match="no assets store"):
        platform.router.route_assets(True)
    platform.router.route_assets(False)


def test_every_managed_route_together_passes_nginx_t_and_is_removed_at_once(
    make_platform: Callable[..., LocalPlatform],
) -> None:
    platform = make_platform(replicas=1)
    url = platform.up(OLD)
    router = platform.router
    # a group named like a keyword of nginx's map directive still routes by its cookie
    platform.scale("default", NEW, 1)
    router.set_weights({platform.group_name(OLD): 1, "default": 1})
    router.set_affinity(True)
    assert platform.assets is not None
    platform.assets.publish(OLD)
    router.route_assets(True)
    router.set_preview("default")
    result = nginx_t(platform)
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr
    assert {request(url, "/", "default")[1:3] for _ in range(6)} == {("16.6.0", "default")}
    router.remove_managed_routes()
    generation = router.record.generation
    router.remove_managed_routes()
    assert router.record.generation == generation
    record = router.record
    assert (record.affinity, record.assets_dir, record.preview_group) == (False, None, None)
    served = router.routing()
    assert served is not None
    assert (served["affinity"], served["assets"], served["preview"]) == (False, False, None)
    assert nginx_t(platform).returncode == 0


def _access_lines(platform: LocalPlatform, marker: str, count: int) -> list[str]:
    """The access-log lines whose request has ``marker``, once ``count`` are written (flushed each second)."""
    path = platform.router.nginx.prefix / "logs" / "access.log"
    deadline = time.monotonic() + 10.0
    while True:
        lines = [line for line in path.read_text().splitlines() if marker in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def _hits(record: InstanceRecord) -> int:
    status, _headers, body = get(f"http://{record.address}/-/hits")
    assert status == 200
    return int(json.loads(body)["hits"])


def _send(url: str, method: str = "GET") -> int:
    """``method url`` on a new connection: the status."""
    rest = url.removeprefix("http://")
    address, _, path = rest.partition("/")
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, "/" + path, body=b"note=1" if method == "POST" else None)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_retry_option_renders_both_ways_and_passes_nginx_t(
    make_platform: Callable[..., LocalPlatform],
) -> None:
    platform = make_platform(replicas=1)
    platform.up(OLD)
    text = platform.router.nginx.conf_path.read_text()
    assert "proxy_next_upstream off;" in text and "proxy_next_upstream error" not in text
    for directive in (
        "proxy_http_version 1.1;",
        "map $http_upgrade $connection_upgrade {",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
    ):
        assert directive in text
    result = nginx_t(platform)
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr
    routing = platform.router.routing()
    assert routing is not None and routing["retries"] is False and platform.router.retries is False

    retrying = make_platform(replicas=1, retry=True)  # the same fleet, adopted with retry on
    assert retrying.router.retries is True
    retrying.router.sync()
    text = retrying.router.nginx.conf_path.read_text()
    assert (
        "proxy_next_upstream error timeout;" in text
        and "'non_idempotent' is given, which zdu never does" in text
    )
    result = nginx_t(retrying)
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr
    routing = retrying.router.routing()
    assert routing is not None and routing["retries"] is True


def test_without_retry_a_refused_get_fails_once_and_retry_hides_it(
    make_platform: Callable[..., LocalPlatform],
) -> None:
    """The negative control of retry=false: the same dead instance, seen by the client only without retry."""
    platform = make_platform(replicas=2, command=ws_app.command())
    url = platform.up(OLD)
    dead, alive = platform.state.instances
    os.kill(dead.pid, signal.SIGKILL)  # still routed: nginx's connections to it are refused
    while pid_alive(dead.pid):
        time.sleep(0.01)
    statuses = [_send(url + "/?phase=one") for _ in range(6)]
    assert 502 in statuses and statuses.count(200) == _hits(alive), statuses
    lines = _access_lines(platform, "phase=one", 6)
    failed = [line for line in lines if " 502 " in line]
    assert failed and all(f"upstream={dead.address} " in line for line in failed), lines  # one attempt

    retrying = make_platform(replicas=2, command=ws_app.command(), retry=True)
    retrying.router.sync()  # a reload: nginx forgets that the dead instance failed
    statuses = [_send(url + "/?phase=two") for _ in range(6)]
    assert statuses == [200] * 6
    lines = _access_lines(retrying, "phase=two", 6)
    assert any(f"upstream={dead.address}, {alive.address} " in line for line in lines), lines


def test_a_post_is_never_retried_even_with_retry_on(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform(replicas=2, command=ws_app.command(), retry=True)
    url = platform.up(OLD)
    first, second = platform.state.instances
    # A GET whose connection the first instance cuts after reading it is re-sent to the second (the
    # upstreams have max_fails=0: nginx keeps trying the first instance for every request) ...
    statuses = [_send(f"{url}/?drop={first.port}") for _ in range(4)]
    assert statuses == [200] * 4
    cut_gets = _hits(first)
    assert cut_gets >= 1 and _hits(second) == 4
    # ... a POST cut the same way is not: the client sees the failure, and no write arrives twice.
    statuses = [_send(f"{url}/api/v4/writes?drop={first.port}", "POST") for _ in range(4)]
    cut_posts = _hits(first) - cut_gets
    assert cut_posts >= 1 and statuses.count(502) == cut_posts, statuses
    assert statuses.count(200) == _hits(second) - 4 == 4 - cut_posts


def test_websockets_pass_through_every_location(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform(replicas=1, command=ws_app.command())
    url = platform.up(OLD)
    router = platform.router
    assert ws_app.echo(url + "/-/cable") == "16.5.0: hello"
    new = platform.group_name(NEW)
    platform.scale(new, NEW, 1)
    router.set_affinity(True)
    assert ws_app.echo(url + "/-/cable") in {"16.5.0: hello", "16.6.0: hello"}
    assert platform.assets is not None
    platform.assets.publish(OLD)
    router.route_assets(True)
    assert ws_app.echo(url + "/-/cable") in {"16.5.0: hello", "16.6.0: hello"}
    preview = router.set_preview(new)
    assert preview is not None
    assert ws_app.echo(preview + "/-/cable") == "16.6.0: hello"
    router.set_affinity(False)
    router.route_assets(False)
    assert ws_app.echo(url + "/-/cable", "plain") in {"16.5.0: plain", "16.6.0: plain"}


def _instance(number: int, group: str, *, routable: bool = True) -> InstanceRecord:
    version = "16.5.0" if group == "v16-5-0" else "16.6.0"
    return InstanceRecord(
        f"{group}-{number}",
        group,
        version,
        "127.0.0.1",
        4000 + number,
        number,
        0.0,
        number,
        "",
        routable=routable,
    )


def test_only_a_change_that_adds_instances_skips_the_wait_for_the_previous_workers() -> None:
    """What a reload may return without waiting for: nothing leaves, nothing else changes."""

    only_adds = zdu_local.router._only_adds
    old1, old2, new3 = _instance(1, "v16-5-0"), _instance(2, "v16-5-0"), _instance(3, "v16-6-0")
    both = {"v16-5-0": 1, "v16-6-0": 1}
    before = RouterRecord("127.0.0.1:4000", 4009, generation=4, weights=both, routed=(old1.id, old2.id))
    after = attrs.evolve(before, generation=5)
    assert only_adds(before, after, [old1, old2, new3])  # new3 turned ready and joins
    assert not only_adds(before, after, [old1, old2])  # nothing joins: no reason to skip anything
    assert not only_adds(before, after, [old1, _instance(2, "v16-5-0", routable=False), new3])  # one leaves
    assert not only_adds(before, attrs.evolve(after, weights={"v16-6-0": 1}), [old1, old2, new3])
    assert not only_adds(before, attrs.evolve(after, affinity=True), [old1, old2, new3])
    assert not only_adds(before, attrs.evolve(after, preview_group="v16-6-0"), [old1, old2, new3])
    assert not only_adds(attrs.evolve(before, routed=()), after, [old1])  # nginx answered 503 before
    two_groups = attrs.evolve(before, weights={"v16-5-0": 1, "v16-6-0": 1}, routed=(old1.id, new3.id))
    joined = [old1, new3, _instance(4, "v16-6-0")]
    assert only_adds(two_groups, attrs.evolve(two_groups, weights={"v16-5-0": 2, "v16-6-0": 2}), joined)
    assert not only_adds(two_groups, attrs.evolve(two_groups, weights={"v16-5-0": 1, "v16-6-0": 3}), joined)


def test_after_an_instance_joins_nginx_answers_only_the_new_generation(
    make_platform: Callable[..., LocalPlatform],
) -> None:
    """A join returns before nginx's previous workers stop, yet what nginx routes is asked of the new ones."""
    platform = make_platform(replicas=1)
    platform.up(OLD)
    old, new = platform.group_name(OLD), platform.group_name(NEW)
    platform.router.set_weights({old: 1, new: 1})
    for replicas in (1, 2, 3):
        platform.scale(new, NEW, replicas)
        routing = platform.router.routing()
        assert routing is not None and routing["generation"] == platform.router.record.generation
        assert len(routing["routed"]) == 1 + replicas, routing  # type: ignore[arg-type]
        assert platform.router.verify_weights({old: 1, new: 1})
