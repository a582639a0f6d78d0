"""The nginx router: real nginx, changed only by graceful reloads that are confirmed in force."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

import zdu_local.router
from zdu.errors import PlatformError
from zdu.model import Version
from zdu.platform import Router
from zdu_local.platform import LocalPlatform

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
    assert "weight=3;" in text and "weight=1;" in text and "proxy_next_upstream error timeout;" in text
    result = subprocess.run(
        [
            nginx.binary,
            "-t",
            "-p",
            f"{nginx.prefix}/",
            "-c",
            str(nginx.conf_path),
            "-e",
            str(nginx.error_log),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
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
        zdu_local.router, "render_config", lambda *args: render(*args).replace("worker_processes", "bogus")
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
