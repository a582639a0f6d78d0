"""Kill anywhere: zdu SIGKILLed at every step boundary and inside every long step, then resumed or rolled back

A real local fleet (nginx, demo apps on one SQLite database) is upgraded by ``zdu`` as a subprocess,
under an independent client of its own (GETs, and writes it reads back at the end). The orchestrator
is SIGKILLed at a kill point: right after the journal records a step's end (a step boundary), or a
fixed delay after a long step's start (instances starting, draining, nginx reloading, a migration
running, a traffic layer switching). The next kill point is then taken in the command that picks the
upgrade up: in the ``resume`` chain, ``zdu resume ID`` is itself killed at the next point, and so on,
until a last ``zdu resume`` finishes the upgrade; in the ``rollback`` chain, ``zdu rollback ID`` puts
the old version back after each kill and a new ``zdu upgrade`` is started for the next point. Killed
past the point of no return (post-deployment migrations), ``zdu rollback`` is refused (exit 1) and
``zdu resume`` finishes the upgrade.

At the end of each chain: the upgrade succeeded (or every one rolled back), only the right version
serves and every instance the fleet's state names runs and is routed, no other instance process
exists, the client saw no failed request and every write it was told succeeded reads back.

:data:`KILL_POINTS_TRIED` counts the kill points (docs/reliability.md gives the number).
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import attrs
import psutil
import pytest

from zdu.journal import Journal
from zdu_demo.demo_app import DEMO_MIGRATIONS

from .conftest import FROM, TO, write_config
from .test_migrations_upgrade import migrating_config

pytestmark = pytest.mark.slow

ZDU = str(Path(sys.executable).parent / "zdu")
OLD, NEW = "v16-5-0", "v16-6-0"
REPLICAS = 2
# Long enough for SQLite to be busy inside the migration's transaction when the kill lands.
SLOW_SQL = (
    "CREATE TABLE IF NOT EXISTS kill_matrix_{stage} (n INTEGER);\n"
    "INSERT INTO kill_matrix_{stage} WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 2000000) SELECT sum(x) FROM c;\n"
)


@attrs.frozen
class KillPoint:
    """Where to SIGKILL ``zdu``: ``delay`` seconds after the first event ``kind`` whose text has ``match``.

    ``kind`` is a journal event kind (``step-started``, ``step-finished``, ``phase-started``); ``match``
    is looked for in the event's message (a step's name) or its phase. ``past_no_return``: the kill
    lands once post-deployment migrations have started.
    """

    kind: str
    match: str
    delay: float = 0.0
    past_no_return: bool = False

    def __str__(self) -> str:
        where = "after" if self.kind == "step-finished" else "inside"
        return f"{where} {self.match!r}" + (f" (+{self.delay:g}s)" if self.delay else "")


def boundary(step: str) -> KillPoint:
    return KillPoint("step-finished", step)


def inside(step: str, delay: float) -> KillPoint:
    return KillPoint("step-started", step, delay)


# Every step boundary of each strategy once, and inside each kind of long step: start, drain,
# reload, migration, layer switch. A resume chain takes its points in order, each in the command that
# resumed from the one before (so a later point must still come after the earlier kill); the rollback
# chain takes every point, each in a new upgrade.
BOUNDARIES = {
    "rolling": [
        boundary(f"scale {NEW} to 1"),
        boundary(f"scale {OLD} to 1 while"),
        boundary(f"route only {NEW}"),
        boundary(f"scale {OLD} to 0"),
        boundary(f"remove {OLD}"),
    ],
    "blue-green": [
        boundary(f"start {NEW}"),
        boundary(f"verify {NEW}"),
        boundary(f"switch traffic to {NEW}"),
        boundary(f"keep {OLD}"),
        boundary(f"remove {OLD}"),
    ],
    "rolling+sticky-nginx+sql": [
        boundary("switch affinity on"),
        boundary(f"scale {NEW} to 1"),
        boundary(f"scale {OLD} to 1 while"),
        boundary(f"route only {NEW}"),
        boundary(f"scale {OLD} to 0"),
        boundary(f"remove {OLD}"),
        boundary("switch affinity off"),
    ],
}
INSIDE = {
    "rolling": [
        inside(f"scale {NEW} to 1", 0.35),  # start: the new instance is starting
        inside(f"scale {OLD} to", 0.25),  # drain: an old instance drains (while a new one starts)
        inside(f"route only {NEW}", 0.03),  # reload: nginx puts the new routing in force
    ],
    "blue-green": [
        inside(f"start {NEW}", 0.35),  # start: the new set starts out of traffic
        inside(f"verify {NEW}", 0.4),  # analysis through the preview route
        inside(f"switch traffic to {NEW}", 0.03),  # reload: the switch
        inside(f"keep {OLD}", 0.3),  # the scale-down delay
        inside(f"remove {OLD}", 0.02),  # drain: the old set
    ],
    "rolling+sticky-nginx+sql": [
        KillPoint("phase-started", "migrate(pre)", 0.05),  # migration: regular migrations run
        inside("switch affinity on", 0.02),  # layer switch
        inside(f"scale {OLD} to", 0.25),  # drain, affinity on
        inside("switch affinity off", 0.02),  # layer switch
        KillPoint("phase-started", "migrate(post)", 0.05, past_no_return=True),  # migration, no return
    ],
}
STRATEGIES = list(BOUNDARIES)


def all_points(strategy: str) -> list[KillPoint]:
    """The strategy's kill points, in the order an upgrade reaches them."""
    return sorted([*INSIDE[strategy], *BOUNDARIES[strategy]], key=lambda p: _rank(strategy, p))


def _rank(strategy: str, point: KillPoint) -> tuple[int, int]:
    """Before or after which step ``point`` comes (inside a step: before its end)."""
    if point.kind == "phase-started":
        return (1000 if point.past_no_return else -1, 0)
    steps = [b.match for b in BOUNDARIES[strategy]]
    index = next(i for i, step in enumerate(steps) if step.startswith(point.match))
    return (index, 1 if point.kind == "step-finished" else 0)


#: every kill point the matrix tries: each strategy's in its two resume chains, and all of them again
#: in its rollback chain
KILL_POINTS_TRIED = 2 * sum(len(BOUNDARIES[s]) + len(INSIDE[s]) for s in STRATEGIES)


def fleet_config(directory: Path, strategy: str) -> Path:
    """The strategy's cell.toml: 2 instances, no zdu probe (the test's own client is the judge)."""
    if strategy == "rolling+sticky-nginx+sql":
        migrations = directory / "migrations"
        shutil.copytree(DEMO_MIGRATIONS, migrations)
        (migrations / "db" / "migrate" / "20231016000002_kill_matrix_slow.sql").write_text(
            SLOW_SQL.format(stage="pre")
        )
        (migrations / "db" / "post_migrate" / "20231016000007_kill_matrix_slow.sql").write_text(
            SLOW_SQL.format(stage="post")
        )
        config = migrating_config(directory, migrations, replicas=REPLICAS, layers=["sticky-nginx"])
    else:
        options = {"scale_down_delay": 1.0, "preview_seconds": 1.0} if strategy == "blue-green" else {}
        config = write_config(directory, strategy=strategy, options=options, replicas=REPLICAS)
    lines = config.read_text().splitlines()
    start = lines.index("[[probes]]")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("["))
    config.write_text("\n".join(lines[:start] + lines[end:]) + "\n")
    return config


@attrs.define
class Client:
    """A user's own client through nginx: a GET of the version and a write, in a loop; never zdu's probe."""

    url: str
    versions: list[tuple[float, int | None, str | None]] = attrs.field(factory=list)
    writes: list[tuple[str, int | None]] = attrs.field(factory=list)
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Client:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            status, body = _request(self.url + "/api/v4/version")
            self.versions.append((time.monotonic(), status, (body or {}).get("version")))
            key = f"kill-matrix-{n}"
            status, _ = _request(self.url + "/api/v4/writes", {"key": key})
            self.writes.append((key, status))
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def failed(self) -> list[object]:
        """Requests answered 5xx or not at all."""
        bad_reads = [v for v in self.versions if v[1] is None or v[1] >= 500]
        return bad_reads + [w for w in self.writes if w[1] is None or w[1] >= 500]

    def lost_writes(self) -> list[str]:
        """Writes acknowledged (201) that do not read back."""
        acknowledged = [key for key, status in self.writes if status == 201]
        status, body = _request(self.url + "/api/v4/writes/lookup", {"keys": acknowledged})
        assert status == 200, status
        return sorted(set(acknowledged) - set(body["found"]))


def _request(url: str, payload: object | None = None) -> tuple[int | None, dict | None]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError):
        return None, None


def zdu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ZDU, *args], capture_output=True, text=True, timeout=180)


@attrs.define
class Chain:
    """Runs ``zdu`` commands on one fleet and kills them at kill points."""

    config: Path
    journal: Journal
    killed: list[str] = attrs.field(factory=list)
    #: points of a resume chain the kill before landed past (a kill at a step's end can land inside
    #: the next step, whose end the resumed command then never records): that command finished
    overtaken: list[str] = attrs.field(factory=list)

    def _overtaken(self, upgrade_id: str, point: KillPoint, seen: int) -> bool:
        """Whether ``point``'s step had started before the command that ended without reaching it."""
        earlier = self.journal.events(upgrade_id)[:seen]
        return any(e.kind == "step-started" and e.message.startswith(point.match) for e in earlier)

    def upgrade_killed_at(self, point: KillPoint) -> str:
        """Start ``zdu upgrade``, SIGKILL it at ``point``; return the upgrade's id."""
        known = {u.id for u in self.journal.upgrades("e2e", limit=1000)}
        process = subprocess.Popen([ZDU, "upgrade", str(self.config)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [u.id for u in self.journal.upgrades("e2e", limit=1000) if u.id not in known]
            if new:
                self._kill_at(process, new[0], point, 0)
                return new[0]
            assert process.poll() is None, f"zdu upgrade exited ({process.returncode}) before it began"
            time.sleep(0.005)
        process.kill()
        pytest.fail("zdu upgrade never began an upgrade")

    def command_killed_at(self, command: str, upgrade_id: str, point: KillPoint) -> None:
        """Run ``zdu COMMAND ID`` and SIGKILL it at ``point`` (counted from the events it adds)."""
        seen = len(self.journal.events(upgrade_id))
        process = subprocess.Popen(
            [ZDU, command, upgrade_id, "--config", str(self.config)], stdout=subprocess.DEVNULL
        )
        self._kill_at(process, upgrade_id, point, seen)

    def _kill_at(
        self, process: subprocess.Popen[bytes], upgrade_id: str, point: KillPoint, seen: int
    ) -> None:
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                events = self.journal.events(upgrade_id)[seen:]
                if any(
                    e.kind == point.kind and (point.match in e.message or point.match == e.phase)
                    for e in events
                ):
                    time.sleep(point.delay)
                    break
                if process.poll() is not None:
                    if process.returncode == 0 and self._overtaken(upgrade_id, point, seen):
                        self.overtaken.append(str(point))
                        return
                    pytest.fail(f"zdu ended ({process.returncode}) before kill point {point}")
                time.sleep(0.003)
            else:
                pytest.fail(f"kill point {point} never reached")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self.killed.append(str(point))
        record = self.journal.get(upgrade_id)
        assert record is not None and record.status.in_progress, (point, record)


def assert_only(config: Path, version: str, directory: Path, client: Client) -> None:
    """Only ``version`` serves; every instance in the fleet's state runs and is routed, and no other."""
    status = zdu("local", "status", str(config), "--json")
    assert status.returncode == 0, status.stderr
    state = json.loads((directory / "state" / "targets" / "e2e" / "state.json").read_text())
    instances = state["instances"]
    assert (
        sorted((i["version"], i["routable"], i.get("leaving", False)) for i in instances)
        == [(version, True, False)] * REPLICAS
    ), instances
    group = "v" + version.replace(".", "-")
    assert set(state["groups"]) == {group}, state["groups"]
    router = state["router"]
    assert {g for g, w in router["weights"].items() if w} == {group}, router
    assert sorted(router["routed"]) == sorted(i["id"] for i in instances), router
    assert router["preview_group"] is None and not router["affinity"], router
    pids = {i["pid"] for i in instances}
    assert all(psutil.pid_exists(pid) for pid in pids)
    assert demo_apps(directory) == pids
    time.sleep(0.3)  # the client's latest answers come from the fleet as it is now
    latest = [v for _, status, v in client.versions[-5:] if status == 200]
    assert latest and set(latest) == {version}, client.versions[-5:]


def demo_apps(directory: Path) -> set[int]:
    """The pids of the demo-app processes running on this fleet's database."""
    found = set()
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(directory / "gitlab.sqlite") in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.add(process.pid)
    return found


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("mode", ["resume-boundaries", "resume-inside", "rollback"])
def test_kill_anywhere(tmp_path, fleet, strategy, mode):
    config = fleet_config(tmp_path, strategy)
    platform = fleet(config)
    client = Client(platform.router.url).start()
    chain = Chain(config, Journal(tmp_path / "state" / "journal.sqlite"))
    points = {"resume-boundaries": BOUNDARIES, "resume-inside": INSIDE}.get(mode, {}).get(strategy)
    points = points or all_points(strategy)
    try:
        if mode.startswith("resume"):
            upgrade_id = chain.upgrade_killed_at(points[0])
            for point in points[1:]:
                chain.command_killed_at("resume", upgrade_id, point)
                if chain.overtaken:
                    break
            if not chain.overtaken:
                resumed = zdu("resume", upgrade_id, "--config", str(config), "--json")
                assert resumed.returncode == 0, resumed.stderr
            record = chain.journal.get(upgrade_id)
            assert record is not None and record.status.value == "succeeded", record
            final = TO
        else:
            for point in points:
                upgrade_id = chain.upgrade_killed_at(point)
                rolled = zdu("rollback", upgrade_id, "--config", str(config), "--json")
                if point.past_no_return:
                    # past the point of no return: a clear refusal, and resume finishes the upgrade
                    assert rolled.returncode == 1, rolled
                    assert "point of no return" in rolled.stderr and "roll forward" in rolled.stderr
                    resumed = zdu("resume", upgrade_id, "--config", str(config), "--json")
                    assert resumed.returncode == 0, resumed.stderr
                    final = TO
                else:
                    assert rolled.returncode == 0, (point, rolled.stderr)
                    assert json.loads(rolled.stdout)["status"] == "rolled_back"
                    assert_only(config, FROM, tmp_path, client)
                    final = FROM
        assert chain.killed == [str(p) for p in points][: len(chain.killed)]
        assert len(chain.killed) + len(chain.overtaken) == len(points) or chain.overtaken
        assert_only(config, final, tmp_path, client)
    finally:
        client.stop()
    assert client.failed() == []
    assert client.lost_writes() == []
    assert len(client.writes) > 50  # the client kept writing throughout
