"""Every chore of the project: ``nox -s tests``, ``lint``, ``typing``, ``demo``, ``bench``, ``docs``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


def ensure_system_packages(session: nox.Session, *commands: str) -> None:
    """Install nginx, haproxy and friends from Debian's packages when missing and we may (root, apt-get)."""
    missing = [
        command
        for command in commands
        if not (
            shutil.which(command)
            or Path(f"/usr/sbin/{command}").exists()
            or any(Path("/usr/lib/postgresql").glob(f"*/bin/{command}"))
        )
    ]
    if not missing:
        return
    packages = {
        "nginx": "nginx-light",
        "curl": "curl",
        "initdb": "postgresql",
        "haproxy": "haproxy",
        "wrk": "wrk",
        # the observability tests: a real Prometheus and Pushgateway, and a browser for the HTML report
        "prometheus": "prometheus",
        "prometheus-pushgateway": "prometheus-pushgateway",
        "chromium": "chromium",
    }
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.error(f"missing {', '.join(missing)}: install {' '.join(packages[c] for c in missing)}")
    session.log(f"installing {', '.join(missing)} with apt-get")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *[packages[c] for c in missing]],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def ensure_gitlab_ci_local(session: nox.Session) -> None:
    """Install gitlab-ci-local 4.56 (it runs on Node 20) with npm, and rsync, when missing (fleet tests)."""
    if shutil.which("gitlab-ci-local") and shutil.which("rsync"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.error(
            "missing gitlab-ci-local or rsync: apt-get install rsync npm; npm install -g gitlab-ci-local@4.56"
        )
    session.log("installing rsync (and npm) with apt-get, gitlab-ci-local@4.56 with npm")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wanted = ["rsync", *([] if shutil.which("npm") else ["npm"])]
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *wanted], check=True, env=env)
    if not shutil.which("gitlab-ci-local"):
        subprocess.run(
            ["npm", "install", "--global", "--no-fund", "--no-audit", "gitlab-ci-local@4.56"], check=True
        )


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite, the slow end-to-end scenarios included (``-- -m 'not slow'`` skips them)."""
    ensure_system_packages(
        session,
        "nginx",
        "curl",
        "initdb",
        "haproxy",
        "wrk",
        "prometheus",
        "prometheus-pushgateway",
        "chromium",
    )
    # lint too: the import-contract tests run import-linter against planted violations
    session.install("-e", ".[all,test,lint]")
    ensure_gitlab_ci_local(session)
    session.run("pytest", *session.posargs)
    # the suite above ran the newest kubernetes client the extra allows; now the oldest
    session.notify("kubernetes_client(client='oldest')")


def kubernetes_floor() -> str:
    """The lowest ``kubernetes`` client the ``kubernetes`` extra of pyproject.toml allows."""
    import tomllib  # noqa: PLC0415

    project = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra: list[str] = project["optional-dependencies"]["kubernetes"]
    for requirement in extra:
        name, _, floor = requirement.partition(">=")
        if name.strip() == "kubernetes" and floor:
            return floor.split(",")[0].strip()
    raise ValueError(f"the kubernetes extra {extra!r} has no 'kubernetes>=' floor")


@nox.session(python=PYTHON)
@nox.parametrize("client", ["oldest", "newest"])
def kubernetes_client(session: nox.Session, client: str) -> None:
    """tests/kubernetes with the oldest or the newest ``kubernetes`` client the extra allows."""
    session.install("-e", ".[all,test]")
    if client == "oldest":
        session.install(f"kubernetes=={kubernetes_floor()}")
    else:
        session.install("--upgrade", "kubernetes")
    session.run("python", "-c", "import kubernetes; print('kubernetes client', kubernetes.__version__)")
    session.run("pytest", "tests/kubernetes", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and format check; lint-imports: the import contracts of pyproject.toml."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """Type-check with mypy --strict over zdu/, plugins/ and this file."""
    session.install("-e", ".[all,typing]")
    session.run("mypy")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """``zdu demo`` on the embedded local default (pass arguments after ``--``, e.g. ``-- --json``)."""
    ensure_system_packages(session, "nginx", "haproxy", "wrk")
    session.install("-e", ".[all]")
    session.run("zdu", "demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; results are written to docs/benchmarks.md with the machine and the date."""
    ensure_system_packages(session, "nginx", "haproxy", "wrk")
    session.install("-e", ".[all]")
    session.run("python", "bench/run.py", *session.posargs)
    session.run("python", "bench/fleet.py")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Check the docs against the code (hook signatures, the example plugin)."""
    session.install("-e", ".[all,test]")
    session.run("pytest", "tests/core/test_docs.py", *session.posargs)


@nox.session(python=PYTHON)
def e2e_kind(session: nox.Session) -> None:
    """The kubernetes scenarios against a real cluster (kind, k3d, ...); skipped without KUBECONFIG."""
    if not os.environ.get("KUBECONFIG"):
        session.skip("KUBECONFIG is not set: point it at a disposable cluster (kind create cluster)")
    session.install("-e", ".[all,test]")
    session.run(
        "pytest", "tests/kubernetes/test_kind_cluster.py", *session.posargs, env={"ZDU_E2E_KIND": "1"}
    )
