"""Affinity scoped to assets: pages by weight, a page's assets to the group that rendered it."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from tests.nginx_check import nginx_t
from zdu.errors import PlatformError
from zdu.model import Version
from zdu_demo.demo_app import asset_hash
from zdu_local.nginx import Nginx
from zdu_local.platform import LocalPlatform
from zdu_local.router import render_config
from zdu_local.state import InstanceRecord, RouterRecord

OLD = Version.parse("16.5.0")
NEW = Version.parse("16.6.0")


def request(url: str, path: str, group: str | None = None) -> tuple[int, str | None, str | None]:
    """GET ``path`` with the cookie ``zdu_group=<group>``: status, version, the Set-Cookie header."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", path, headers={"Cookie": f"zdu_group={group}"} if group else {})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Demo-Version"), response.getheader("Set-Cookie")
    finally:
        connection.close()


def asset(version: Version) -> str:
    return f"/assets/application-{asset_hash(str(version))}.js"


def test_pages_follow_the_weights_and_assets_the_page(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform(replicas=1)
    url = platform.up(OLD)
    old, new = platform.group_name(OLD), platform.group_name(NEW)
    router = platform.router
    platform.scale(new, NEW, 1)
    router.set_weights({old: 1, new: 1})
    router.set_affinity(True, "assets")
    assert nginx_t(platform).returncode == 0
    served = router.routing()
    assert served is not None and (served["affinity"], served["affinity_scope"]) == (True, "assets")
    # a page names the group that rendered it, for /assets/ only and for a minute
    pages = [request(url, "/") for _ in range(10)]
    assert {version for _, version, _ in pages} == {"16.5.0", "16.6.0"}
    for _, version, cookie in pages:
        group = old if version == "16.5.0" else new
        assert cookie == f"zdu_group={group}; Path=/assets/; Max-Age=60; HttpOnly; SameSite=Lax"
    # a client's cookie does not hold its pages: they follow the weights
    assert {request(url, "/", old)[1] for _ in range(10)} == {"16.5.0", "16.6.0"}
    # its assets go to the group the cookie names, and set no cookie
    for group, version in ((old, OLD), (new, NEW)):
        answers = {request(url, asset(version), group) for _ in range(6)}
        assert answers == {(200, str(version), None)}
    # the control: without the cookie, half of the assets land on the other version
    assert 404 in {request(url, asset(OLD))[0] for _ in range(10)}
    # old out of the router: its pages stop, the assets of its pages still come from it
    router.set_weights({new: 1})
    assert {request(url, "/")[1] for _ in range(6)} == {"16.6.0"}
    assert request(url, asset(OLD), old)[:2] == (200, "16.5.0")
    # switched to session scope and off again, by graceful reloads of one master
    master = router.master_pid()
    router.set_affinity(True, "session")
    assert request(url, "/")[2] == f"zdu_group={new}; Path=/; HttpOnly; SameSite=Lax"
    router.set_affinity(False)
    assert request(url, "/")[2] is None
    assert router.master_pid() == master


def test_an_unknown_scope_is_refused_naming_it(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform(replicas=1)
    platform.up(OLD)
    with pytest.raises(PlatformError, match=r"affinity scope must be one of session, assets, got 'pages'"):
        platform.router.set_affinity(True, "pages")


def test_a_joining_instance_is_in_its_group_upstream_before_it_takes_pages(tmp_path: Path) -> None:
    """Rendered: an instance in ``joining`` answers its group's assets, but no page yet."""
    nginx = Nginx("nginx", tmp_path)
    nginx.prepare()
    old = InstanceRecord("v16-5-0-1", "v16-5-0", "16.5.0", "127.0.0.1", 4001, 1, 0.0, 1, "", routable=True)
    new = InstanceRecord("v16-6-0-2", "v16-6-0", "16.6.0", "127.0.0.1", 4002, 2, 0.0, 2, "", routable=True)
    record = RouterRecord(
        listen="127.0.0.1:4000",
        control_port=4003,
        weights={"v16-5-0": 1, "v16-6-0": 1},
        affinity=True,
        affinity_scope="assets",
    )
    joining = render_config(nginx, attrs.evolve(record, joining=(new.id,)), [old, new])
    users = joining.split("upstream zdu_users {", 1)[1].split("}", 1)[0]
    group = joining.split("upstream zdu_group_v16-6-0 {", 1)[1].split("}", 1)[0]
    assert "127.0.0.1:4002" not in users and "127.0.0.1:4001" in users
    assert "127.0.0.1:4002" in group
    joined = render_config(nginx, record, [old, new])
    assert "127.0.0.1:4002" in joined.split("upstream zdu_users {", 1)[1].split("}", 1)[0]
