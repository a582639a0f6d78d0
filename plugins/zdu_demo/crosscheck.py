"""An independent cross-check of the probe: wrk, a load generator that is not zdu's code.

zdu's figures come from its own ``http`` probe. A skeptic asks whether the probe could miss failures
that a user would see; the answer is a second instrument written by somebody else, sending its own
traffic through the same router at the same time. :class:`IndependentLoad` runs `wrk
<https://github.com/wg/wrk>`_ (Debian's ``wrk`` package) with a small Lua script: page views (``GET``
of ``path``) and writes (``POST`` of a unique key to ``write_path``, as the demo app accepts them),
paced by a per-connection delay. wrk never retries: a refused connection, a reset, a timeout and an
answer of 400 or more are each counted once, and :meth:`IndependentLoad.stop` reports them.

Every request asks for ``Connection: close``, one connection per request, as the probe does. A
kept-alive connection that sits idle when nginx reloads is closed by the retiring worker; wrk would
send its next request into that closed connection and count a read error for a request no server
ever received (a browser checks an idle connection before reuse and resends on one that closed before
any answer). That edge of HTTP/1.1 keep-alive is documented in docs/probes.md with its figure; it is
not what a drain or a strategy changes.

wrk is closed-loop (a connection waits for its answer before the next request), so its request count
drops while the service stalls; that does not matter here, because it is the *failures* it sees that
are compared with the probe's: none for a safe upgrade, some for a negative control.

    with IndependentLoad("http://127.0.0.1:8080/") as load:
        upgrade.run()
    print(load.result.failed)
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import attrs

__all__ = ["IndependentCount", "IndependentLoad", "WrkMissing", "find_wrk"]

#: The Lua script: requests alternate between page views and writes; ``done`` prints one JSON line.
_SCRIPT = """
local counter = 0
local thread_id = 0
local threads = {}
local prefix = "wrk-" .. tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000000))

setup = function(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  if WRITE_EVERY > 0 and counter % WRITE_EVERY == 0 then
    local key = prefix .. "-" .. tostring(id) .. "-" .. tostring(counter)
    return wrk.format("POST", WRITE_PATH,
      {["Content-Type"] = "application/json", ["Connection"] = "close"}, '{"key": "' .. key .. '"}')
  end
  return wrk.format("GET", PAGE_PATH, {["Connection"] = "close"})
end

delay = function()
  return DELAY_MS
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nZDU-WRK {"requests": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class WrkMissing(RuntimeError):
    """wrk is not installed (Debian's package ``wrk``)."""


def find_wrk() -> str:
    """Return the path of the ``wrk`` program, or raise :class:`WrkMissing`."""
    found = shutil.which("wrk") or next(
        (str(p) for p in (Path("/usr/bin/wrk"), Path("/usr/local/bin/wrk")) if p.exists()), None
    )
    if found is None:
        raise WrkMissing(
            "wrk is not installed: install Debian's package 'wrk' for the independent cross-check"
        )
    return found


@attrs.frozen
class IndependentCount:
    """What wrk counted.

    :ivar tool: ``"wrk"``.
    :ivar requests: requests that got an answer (any status).
    :ivar failed: answers of 400 or more, plus connect, read and write errors and timeouts.
    :ivar errors: the failures by kind (``connect``, ``read``, ``write``, ``status``, ``timeout``).
    """

    tool: str
    requests: int
    failed: int
    errors: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        """The JSON form: ``{"tool", "requests", "failed"}``."""
        return {"tool": self.tool, "requests": self.requests, "failed": self.failed}


def parse_output(text: str) -> IndependentCount:
    """Read the line the Lua script's ``done`` printed; raise ValueError when there is none."""
    for line in reversed(text.splitlines()):
        if line.startswith("ZDU-WRK "):
            figures = json.loads(line.removeprefix("ZDU-WRK "))
            errors = {kind: int(figures[kind]) for kind in ("connect", "read", "write", "status", "timeout")}
            return IndependentCount(
                tool="wrk", requests=int(figures["requests"]), failed=sum(errors.values()), errors=errors
            )
    raise ValueError(f"wrk printed no summary: {text[-500:]!r}")


class IndependentLoad:
    """wrk sending page views and writes to ``url`` from :meth:`start` until :meth:`stop`.

    :param url: the router's URL (``http://host:port``); ``path`` and ``write_path`` are requested there.
    :param connections: wrk's connections (each sends a request, waits for the answer, then ``delay_ms``).
    :param delay_ms: the pause of a connection between an answer and its next request: about
        ``connections * 1000 / delay_ms`` requests per second while the service answers quickly.
    :param write_every: every n-th request is a write (0: no writes).
    :param timeout_s: a request that takes longer counts as a timeout.
    """

    def __init__(
        self,
        url: str,
        *,
        path: str = "/",
        write_path: str = "/api/v4/writes",
        connections: int = 4,
        delay_ms: int = 100,
        write_every: int = 5,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.path = path
        self.write_path = write_path
        self.connections = connections
        self.delay_ms = delay_ms
        self.write_every = write_every
        self.timeout_s = timeout_s
        self.result: IndependentCount | None = None
        self._process: subprocess.Popen[str] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def offered_rps(self) -> float:
        """The rate wrk sends at while answers are quick: connections over the delay."""
        return self.connections * 1000.0 / self.delay_ms if self.delay_ms else float("inf")

    def _script(self) -> str:
        constants = (
            f"PAGE_PATH = {json.dumps(self.path)}\n"
            f"WRITE_PATH = {json.dumps(self.write_path)}\n"
            f"WRITE_EVERY = {int(self.write_every)}\n"
            f"DELAY_MS = {int(self.delay_ms)}\n"
        )
        return constants + _SCRIPT

    def start(self) -> None:
        """Start wrk in the background (it runs until :meth:`stop`, at most an hour)."""
        if self._process is not None:
            raise RuntimeError("the independent load is already running")
        wrk = find_wrk()
        self._directory = tempfile.TemporaryDirectory(prefix="zdu-wrk-")
        script = Path(self._directory.name) / "zdu.lua"
        script.write_text(self._script())
        self._process = subprocess.Popen(
            [
                wrk,
                "--threads",
                "1",
                "--connections",
                str(self.connections),
                "--duration",
                "3600s",
                "--timeout",
                f"{self.timeout_s:g}s",
                "--script",
                str(script),
                self.url + self.path,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> IndependentCount:
        """Stop wrk (SIGINT: it prints its summary) and return what it counted."""
        process = self._process
        if process is None:
            raise RuntimeError("the independent load was not started")
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                output, _ = process.communicate(timeout=self.timeout_s + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            try:
                self.result = parse_output(output)
            except ValueError:
                raise RuntimeError(f"wrk stopped without a summary: {output.strip()[-300:]}") from None
        finally:
            self._process = None
            if self._directory is not None:
                self._directory.cleanup()
                self._directory = None
        return self.result

    def __enter__(self) -> IndependentLoad:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self.stop()
