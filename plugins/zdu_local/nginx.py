"""One nginx server with a prefix directory of its own: started, tested, reloaded, stopped.

Everything nginx writes (configuration, pid file, logs, temporary files) lives under the prefix, so
several fleets run side by side and nothing outside the state directory is touched. The configuration
changes only through :meth:`Nginx.install` (refused unless ``nginx -t`` accepts it) followed by
:meth:`Nginx.reload` (``nginx -s reload``: a graceful reload, which keeps the master process and lets
the old workers finish their requests). nginx is started and stopped only when the whole fleet is.

nginx itself (a new binary, a new version) is replaced by :meth:`Nginx.upgrade`, as nginx documents
it (https://nginx.org/en/docs/control.html#upgrade): USR2 makes the running master execute its
program again, a new master beside the old one that inherits the listening sockets (no moment
without a listener); WINCH makes the old workers close their listening sockets and finish what they
hold; QUIT retires the old master once they are done. nginx re-executes the path it was started
from, so it is started through a link of its own (``sbin/nginx`` in the prefix): pointing that link
at another program before USR2 is what changes the binary.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import attrs
import psutil

from zdu.plugins import PlatformError, ProcessIdentity, tail

__all__ = ["BinaryUpgrade", "Nginx", "find_nginx"]

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
    def old_pid_path(self) -> Path:
        """Where the old master keeps its pid while a new binary runs beside it (:meth:`upgrade`)."""
        return self.pid_path.with_name(self.pid_path.name + ".oldbin")

    @property
    def launcher(self) -> Path:
        """The link nginx is started through (to :attr:`binary`); USR2 re-executes what it points at."""
        return self.prefix / "sbin" / "nginx"

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
        _link(self.launcher, self.binary)
        result = self._run(program=str(self.launcher))
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
        return _master_at(self.pid_path)

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
        retiring = self.retiring_master()
        if retiring is not None:  # an old master of an upgrade still finishing its connections
            self.stop(retiring, timeout)
            self.old_pid_path.unlink(missing_ok=True)

    def retiring_master(self) -> ProcessIdentity | None:
        """The old master of an upgrade (``nginx.pid.oldbin``), while it runs; None otherwise."""
        return _master_at(self.old_pid_path)

    def started_from(self, master: ProcessIdentity) -> str | None:
        """The program ``master`` was started as (what USR2 re-executes); None when it cannot be read.

        nginx overwrites its command line with ``nginx: master process <argv...>``.
        """
        process = master.process()
        if process is None:
            return None
        try:
            words = " ".join(process.cmdline()).removeprefix("nginx: master process ").split()
        except psutil.Error:
            return None
        return words[0] if words else None

    def upgrade(self, program: str | None = None, *, timeout: float = 30.0) -> BinaryUpgrade:
        """Replace the running master and workers by ``program`` (default :attr:`binary`) without a gap.

        The steps nginx documents: the configuration is tested with the new program; the launcher
        link is pointed at it; USR2 to the old master, which renames its pid file ``nginx.pid.oldbin``
        and starts the new master (the new program, the inherited listening sockets), which writes
        ``nginx.pid`` and starts its workers; once they listen, WINCH to the old master (its workers
        stop accepting and finish their connections: requests, long downloads, websockets); once none
        of them listens any more, QUIT to the old master, which exits after its last worker (possibly
        much later: a websocket lasts as long as its client keeps it). When the new master does not
        come up, the old one keeps serving, the link is put back, and PlatformError says why.

        :param program: the nginx program to run from now on (a name or a path, as ``platform.nginx``).
        :param timeout: seconds for each step (the new master's workers listening, the old ones not).
        """
        old = self.master()
        if old is None:
            raise PlatformError(f"nginx does not run (prefix {self.prefix}): nothing to upgrade")
        if self.retiring_master() is not None:
            raise PlatformError(
                f"an upgrade of nginx is still retiring the old master ({self.old_pid_path}): "
                "wait until it exits (its last connections close)"
            )
        new_binary = find_nginx(program) if program is not None else self.binary
        result = self._run("-t", program=new_binary)
        if result.returncode != 0:
            raise PlatformError(
                f"{new_binary} refuses the running configuration: {_nginx_message(result.stderr)}"
            )
        started = self.started_from(old)
        previous_target = str(self.launcher.readlink()) if self.launcher.is_symlink() else None
        if started == str(self.launcher):
            _link(self.launcher, new_binary)
        elif started is None or os.path.realpath(started) != os.path.realpath(new_binary):
            raise PlatformError(
                f"nginx's master (pid {old.pid}) was started as {started!r}, not through "
                f"{self.launcher}: USR2 can only re-execute that program; install {new_binary} there "
                "or restart the fleet's nginx"
            )
        old_workers = self.workers()
        logger.info("upgrading nginx (master pid %d) to %s: USR2", old.pid, new_binary)
        os.kill(old.pid, signal.SIGUSR2)
        try:
            new = self._wait_new_master(old, timeout)
        except PlatformError:
            if previous_target is not None:
                _link(self.launcher, previous_target)
            raise
        logger.info("new nginx master pid %d serves beside the old one: WINCH to %d", new.pid, old.pid)
        os.kill(old.pid, signal.SIGWINCH)
        deadline = time.monotonic() + timeout
        while any(_listens(worker) for worker in old_workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(old.pid, signal.SIGQUIT)
        self._binary = new_binary
        held = sum(_connections(worker) for worker in old_workers)
        logger.info("old nginx master %d retires (QUIT) once its workers' %d connections end", old.pid, held)
        return BinaryUpgrade(old=old, new=new, binary=new_binary, held_connections=held)

    def _wait_new_master(self, old: ProcessIdentity, timeout: float) -> ProcessIdentity:
        """Wait until a new master (a child of ``old``) runs and one of its workers listens."""
        began = time.monotonic()
        new: ProcessIdentity | None = None
        while time.monotonic() < began + timeout:
            new = _master_at(self.pid_path)
            if new is not None and new.pid != old.pid:
                process = new.process()
                try:
                    if process is not None and any(_listens(worker) for worker in process.children()):
                        return new
                except psutil.Error:
                    pass
            elif new is not None and not self.old_pid_path.exists() and time.monotonic() > began + 2.0:
                break  # the new master failed, and the old one took its pid file back
            time.sleep(0.02)
        if new is not None and new.pid != old.pid and new.alive():
            os.kill(new.pid, signal.SIGQUIT)  # the old master keeps serving
        raise PlatformError(
            f"the new nginx master did not come up within {timeout:g}s; the old one (pid {old.pid}) "
            f"keeps serving: {tail(self.error_log, 3)}"
        )

    def _write(self, text: str) -> None:
        temporary = self.conf_path.with_name("nginx.conf.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(self.conf_path)

    def _run(
        self, *arguments: str, conf: Path | None = None, program: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [
            program or self.binary,
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


@attrs.frozen
class BinaryUpgrade:
    """What :meth:`Nginx.upgrade` did.

    :ivar old: the master that served before (retiring: it exits after its last connection).
    :ivar new: the master that serves now.
    :ivar binary: the program the new master runs.
    :ivar held_connections: connections the old workers still held when QUIT was sent (long
        downloads, websockets): they finish on the old workers.
    """

    old: ProcessIdentity
    new: ProcessIdentity
    binary: str
    held_connections: int


def _master_at(pid_path: Path) -> ProcessIdentity | None:
    """The running nginx process whose pid ``pid_path`` holds; None when there is none."""
    try:
        pid = int(pid_path.read_text().strip())
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


def _link(link: Path, target: str) -> None:
    """Point the symbolic link ``link`` at ``target`` atomically (a new link renamed over the old)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(link.name + ".new")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    temporary.replace(link)


def _listens(worker: psutil.Process) -> bool:
    """Whether ``worker`` (an nginx worker) still holds a listening socket."""
    try:
        if worker.status() == psutil.STATUS_ZOMBIE:
            return False
        return any(c.status == psutil.CONN_LISTEN for c in worker.net_connections(kind="tcp"))
    except psutil.Error:
        return False


def _connections(worker: psutil.Process) -> int:
    """The established TCP connections ``worker`` holds (0 when it is gone)."""
    try:
        return sum(1 for c in worker.net_connections(kind="tcp") if c.status == psutil.CONN_ESTABLISHED)
    except psutil.Error:
        return 0
