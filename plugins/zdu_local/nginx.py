"""One nginx server with a prefix directory of its own: started, tested, reloaded, stopped.

Everything nginx writes (configuration, pid file, logs, temporary files) lives under the prefix, so
several fleets run side by side and nothing outside the state directory is touched. The configuration
changes only through :meth:`Nginx.install` (refused unless ``nginx -t`` accepts it) followed by
:meth:`Nginx.reload` (``nginx -s reload``: a graceful reload, which keeps the master process and lets
the old workers finish their requests). nginx is started and stopped only when the whole fleet is.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil

from zdu.errors import PlatformError
from zdu_local.processes import ProcessIdentity, tail

__all__ = ["Nginx", "find_nginx"]

logger = logging.getLogger("zdu.local")

SYSTEM_DIRECTORY = Path("/usr/sbin")
_COMMAND_TIMEOUT = 30.0


def find_nginx(name: str) -> str:
    """Return the path of the nginx program ``name``: a path, or a name looked up on PATH and in /usr/sbin."""
    if os.sep in name:
        if os.access(name, os.X_OK) and Path(name).is_file():
            return name
    else:
        found = shutil.which(name) or shutil.which(name, path=str(SYSTEM_DIRECTORY))
        if found:
            return found
    raise PlatformError(
        f"nginx not found (looked for {name!r} on PATH and in {SYSTEM_DIRECTORY}): "
        "install it (apt-get install nginx-light) or set platform.nginx"
    )


def _nginx_message(output: str) -> str:
    """Return the lines of nginx's output that say what is wrong."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    problems = [line for line in lines if any(f"[{level}]" in line for level in ("emerg", "alert", "crit"))]
    return "; ".join(problems or lines) or "no message"


class Nginx:
    """An nginx server whose every file lives under ``prefix``.

    :param program: the nginx program, as :func:`find_nginx` looks it up (only when first needed).
    :param prefix: its directory: ``conf/nginx.conf``, ``logs/``, ``temp/``, the pid file.
    """

    def __init__(self, program: str, prefix: Path) -> None:
        self.program = program
        self.prefix = prefix.resolve()  # nginx resolves relative paths against its prefix, not our cwd
        self._binary: str | None = None

    @property
    def binary(self) -> str:
        """The path of the nginx program (raises PlatformError when it is not installed)."""
        if self._binary is None:
            self._binary = find_nginx(self.program)
        return self._binary

    @property
    def conf_path(self) -> Path:
        """The configuration nginx runs (or will run)."""
        return self.prefix / "conf" / "nginx.conf"

    @property
    def pid_path(self) -> Path:
        """Where the master process writes its pid."""
        return self.prefix / "logs" / "nginx.pid"

    @property
    def error_log(self) -> Path:
        """Where nginx writes its errors."""
        return self.prefix / "logs" / "error.log"

    @property
    def temp_path(self) -> Path:
        """The parent of nginx's temporary directories (request bodies, proxied responses)."""
        return self.prefix / "temp"

    def prepare(self) -> None:
        """Create the prefix layout."""
        for directory in (self.conf_path.parent, self.pid_path.parent, self.temp_path):
            directory.mkdir(parents=True, exist_ok=True)

    def current(self) -> str | None:
        """Return the text of the installed configuration, if any."""
        try:
            return self.conf_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def test(self, text: str) -> None:
        """Run ``nginx -t`` on ``text``; raise PlatformError with nginx's message when it is refused."""
        self.prepare()
        candidate = self.conf_path.with_name("nginx.conf.candidate")
        candidate.write_text(text, encoding="utf-8")
        try:
            result = self._run("-t", conf=candidate)
        finally:
            candidate.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PlatformError(f"nginx refused the configuration: {_nginx_message(result.stderr)}")

    def install(self, text: str) -> str | None:
        """Test ``text`` and, when nginx accepts it, make it the configuration; return the previous one.

        A refused configuration is not installed (the previous file stays) and raises PlatformError.
        The running server does not see the new file until :meth:`reload`.
        """
        self.test(text)
        previous = self.current()
        self._write(text)
        return previous

    def restore(self, previous: str | None) -> None:
        """Put ``previous`` (as :meth:`install` returned it) back as the configuration."""
        if previous is None:
            self.conf_path.unlink(missing_ok=True)
        else:
            self._write(previous)

    def start(self) -> ProcessIdentity:
        """Start the server on the installed configuration (as a daemon); return its master process."""
        self.prepare()
        result = self._run()
        if result.returncode != 0:
            raise PlatformError(f"nginx did not start: {_nginx_message(result.stderr)}")
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            master = self.master()
            if master is not None:
                logger.info("nginx started (master pid %d, prefix %s)", master.pid, self.prefix)
                return master
            time.sleep(0.02)
        raise PlatformError(f"nginx did not start within 10s: {tail(self.error_log, 5)}")

    def reload(self) -> None:
        """Ask the master to reload its configuration gracefully (``nginx -s reload``)."""
        result = self._run("-s", "reload")
        if result.returncode != 0:
            raise PlatformError(f"nginx -s reload failed: {_nginx_message(result.stderr)}")

    def master(self) -> ProcessIdentity | None:
        """Return the running master process, found by its pid file; None when nginx does not run."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            identity = ProcessIdentity.of(pid)
        except psutil.Error:
            return None
        process = identity.process()
        if process is None:
            return None
        try:
            if "nginx" not in process.name():
                return None
        except psutil.Error:
            return None
        return identity

    def workers(self) -> list[psutil.Process]:
        """Return the worker processes (with old ones still finishing requests after a reload)."""
        master = self.master()
        process = master.process() if master else None
        if process is None:
            return []
        try:
            return process.children()
        except psutil.Error:
            return []

    def stop(self, master: ProcessIdentity | None, timeout: float = 10.0) -> None:
        """Stop the server: gracefully (SIGQUIT), then SIGTERM, then SIGKILL; return once it is gone.

        :param master: the master to stop (as remembered), when the pid file may be gone.
        """
        master = master if master is not None and master.alive() else self.master()
        if master is None:
            return
        process = master.process()
        workers = process.children() if process is not None else []
        for signum, wait in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(master.pid, signum)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while master.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not master.alive():
                break
            logger.warning("nginx master %d still runs after %s", master.pid, signum.name)
        for worker in workers:
            try:
                if worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE:
                    worker.kill()
            except psutil.Error:
                pass
        self.pid_path.unlink(missing_ok=True)
        logger.info("nginx stopped (master pid %d)", master.pid)

    def _write(self, text: str) -> None:
        temporary = self.conf_path.with_name("nginx.conf.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(self.conf_path)

    def _run(self, *arguments: str, conf: Path | None = None) -> subprocess.CompletedProcess[str]:
        command = [
            self.binary,
            "-p",
            f"{self.prefix}/",
            "-c",
            str(conf or self.conf_path),
            "-e",
            str(self.error_log),
            *arguments,
        ]
        try:
            # The daemon keeps nothing of ours open: stdout and stderr go to files, not pipes.
            with (self.prefix / "logs" / "nginx-command.log").open("w+", encoding="utf-8") as output:
                completed = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.prefix,
                    start_new_session=True,
                    timeout=_COMMAND_TIMEOUT,
                    check=False,
                )
                output.seek(0)
                return subprocess.CompletedProcess(command, completed.returncode, "", output.read())
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PlatformError(f"cannot run {' '.join(command)}: {error}") from error
