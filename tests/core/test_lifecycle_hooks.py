"""Lifecycle hooks are called through pluggy: wrappers, tryfirst and trylast work; a broken observer is
reported with its plugin's name and never breaks an upgrade.

Each test runs a real upgrade of a ``sim`` cell (simulated instances, real journal, real orchestrator).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from zdu.model import Report, UpgradeStatus
from zdu.plugins import hookimpl
from zdu.registry import ZduPluginManager, get_plugin_manager
from zdu.testing import register_inline
from zdu.upgrade import Upgrade

LIFECYCLE_HOOKS = (
    "zdu_upgrade_started",
    "zdu_phase_started",
    "zdu_phase_finished",
    "zdu_event",
    "zdu_upgrade_finished",
    "zdu_notify",
)


def sim_upgrade(state: Path, manager: ZduPluginManager, **platform: Any) -> Upgrade:
    raw = {
        "target": {"name": "cell-1", "platform": "sim", "version": "16.5.0"},
        "platform": {"replicas": 2, "start_seconds": 1, "drain_seconds": 1, "time_scale": 0.01, **platform},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling"},
        "upgrade": {"state_dir": str(state)},
    }
    upgrade = Upgrade.from_config(raw, manager)
    upgrade.verify_seconds = 0
    return upgrade


class Wrapper:
    """A new-style wrapper around every lifecycle hook, and a plain observer of each beside it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def _around(self, hook: str) -> Generator[None, None, None]:
        self.calls.append(("before", hook))
        yield
        self.calls.append(("after", hook))

    @hookimpl(wrapper=True)
    def zdu_upgrade_started(self) -> Generator[None, None, None]:
        return (yield from self._around("zdu_upgrade_started"))

    @hookimpl(wrapper=True)
    def zdu_phase_started(self) -> Generator[None, None, None]:
        return (yield from self._around("zdu_phase_started"))

    @hookimpl(wrapper=True)
    def zdu_phase_finished(self) -> Generator[None, None, None]:
        return (yield from self._around("zdu_phase_finished"))

    @hookimpl(wrapper=True)
    def zdu_event(self) -> Generator[None, None, None]:
        return (yield from self._around("zdu_event"))

    @hookimpl(wrapper=True)
    def zdu_upgrade_finished(self) -> Generator[None, None, None]:
        return (yield from self._around("zdu_upgrade_finished"))

    @hookimpl(wrapper=True)
    def zdu_notify(self) -> Generator[None, None, None]:
        return (yield from self._around("zdu_notify"))


class Plain:
    """A plain observer of every lifecycle hook, recording into the wrapper's list."""

    def __init__(self, calls: list[tuple[str, str]]) -> None:
        self.calls = calls

    @hookimpl
    def zdu_upgrade_started(self) -> None:
        self.calls.append(("plain", "zdu_upgrade_started"))

    @hookimpl
    def zdu_phase_started(self, phase: str) -> None:
        self.calls.append(("plain", "zdu_phase_started"))

    @hookimpl
    def zdu_phase_finished(self) -> None:
        self.calls.append(("plain", "zdu_phase_finished"))

    @hookimpl
    def zdu_event(self) -> None:
        self.calls.append(("plain", "zdu_event"))

    @hookimpl
    def zdu_upgrade_finished(self) -> None:
        self.calls.append(("plain", "zdu_upgrade_finished"))

    @hookimpl
    def zdu_notify(self) -> None:
        self.calls.append(("plain", "zdu_notify"))


def test_a_wrapper_observer_is_called_around_every_lifecycle_hook_of_an_upgrade(tmp_path: Path) -> None:
    manager = get_plugin_manager()
    wrapper = Wrapper()
    register_inline(manager, wrapper, name="wrapper")
    register_inline(manager, Plain(wrapper.calls), name="plain")

    report = sim_upgrade(tmp_path, manager).run()

    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    assert {hook for _, hook in wrapper.calls} == set(LIFECYCLE_HOOKS)
    # every call of a hook is: the wrapper's part before, the plain observer, the wrapper's part after
    triples = [wrapper.calls[i : i + 3] for i in range(0, len(wrapper.calls), 3)]
    assert all(
        [when for when, _ in triple] == ["before", "plain", "after"] and len({h for _, h in triple}) == 1
        for triple in triples
    ), wrapper.calls
    phases_started = [t for t in triples if t[0][1] == "zdu_phase_started"]
    assert len(phases_started) == len(report.phases) == 8


def test_tryfirst_and_trylast_order_the_observers(tmp_path: Path) -> None:
    order: list[str] = []

    class First:
        @hookimpl(tryfirst=True)
        def zdu_phase_started(self, phase: str) -> None:
            order.append(f"first {phase}")

    class Middle:
        @hookimpl
        def zdu_phase_started(self, phase: str) -> None:
            order.append(f"middle {phase}")

    class Last:
        @hookimpl(trylast=True)
        def zdu_phase_started(self, phase: str) -> None:
            order.append(f"last {phase}")

    manager = get_plugin_manager()
    # registered in an order that neither registration order nor pluggy's default (last registered
    # first) would turn into first, middle, last
    for name, plugin in (("middle", Middle()), ("first", First()), ("last", Last())):
        register_inline(manager, plugin, name=name)

    report = sim_upgrade(tmp_path, manager).run()

    assert report.ok, report.error
    assert order[:3] == ["first preflight", "middle preflight", "last preflight"]
    assert order[-3:] == ["first cleanup", "middle cleanup", "last cleanup"]
    assert len(order) == 3 * 8


class Raiser:
    """An observer broken in every lifecycle hook, plainly and as a wrapper."""

    @hookimpl
    def zdu_upgrade_started(self) -> None:
        raise RuntimeError("observer bug in zdu_upgrade_started")

    @hookimpl
    def zdu_phase_started(self, phase: str) -> None:
        raise RuntimeError(f"observer bug in {phase}")

    @hookimpl(wrapper=True)
    def zdu_phase_finished(self) -> Generator[None, None, None]:
        yield
        raise RuntimeError("observer bug after zdu_phase_finished")

    @hookimpl(hookwrapper=True)
    def zdu_event(self) -> Generator[None, None, None]:
        raise RuntimeError("observer bug before zdu_event")
        yield  # pragma: no cover

    @hookimpl
    def zdu_upgrade_finished(self, report: Report) -> None:
        raise RuntimeError("observer bug in zdu_upgrade_finished")

    @hookimpl
    def zdu_notify(self) -> None:
        raise RuntimeError("observer bug in zdu_notify")


def test_a_raising_observer_is_reported_by_name_and_the_upgrade_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = get_plugin_manager()
    wrapper = Wrapper()
    register_inline(manager, wrapper, name="wrapper")
    register_inline(manager, Raiser(), name="raiser")
    register_inline(manager, Plain(wrapper.calls), name="plain")

    with caplog.at_level(logging.ERROR, logger="zdu.registry"):
        report = sim_upgrade(tmp_path, manager).run()

    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    failed = {r.getMessage() for r in caplog.records if r.name == "zdu.registry"}
    assert failed == {f"observer 'raiser' failed in {hook}; the upgrade goes on" for hook in LIFECYCLE_HOOKS}
    assert all(r.exc_info is not None for r in caplog.records if r.name == "zdu.registry")
    # the others saw every call, wrapped as before
    plain_calls = [hook for when, hook in wrapper.calls if when == "plain"]
    assert plain_calls.count("zdu_phase_started") == 8
    assert plain_calls.count("zdu_upgrade_finished") == 1
    assert wrapper.calls[-1] == ("after", "zdu_notify")


def test_an_observer_that_fails_its_rollback_phase_does_not_stop_the_rollback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = get_plugin_manager()
    seen: list[str] = []

    class Watcher:
        @hookimpl(wrapper=True)
        def zdu_phase_started(self, phase: str) -> Generator[None, None, None]:
            seen.append(phase)
            return (yield)

    register_inline(manager, Watcher(), name="watcher")
    register_inline(manager, Raiser(), name="raiser")
    upgrade = sim_upgrade(tmp_path, manager, fail_versions=["16.6.0"], ready_timeout=0.5)

    with caplog.at_level(logging.ERROR, logger="zdu.registry"):
        report = upgrade.run()

    assert report.status is UpgradeStatus.ROLLED_BACK, report.error
    assert seen[-1] == "rollback"
    assert "observer 'raiser' failed in zdu_phase_started; the upgrade goes on" in caplog.messages
