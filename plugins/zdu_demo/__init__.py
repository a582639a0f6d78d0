"""What the demo's platforms share: the stand-in GitLab application and the demo's framework.

Not a plugin (it has no entry point): a package the ``local`` and ``get`` plugins both import, so
that neither imports the other. It imports only :mod:`zdu.plugins`, the standard library and
third-party packages, never a plugin:

* the stand-in application (:mod:`zdu_demo.demo_app`, ``python -m zdu_demo.demo_app``), its
  background worker (:mod:`zdu_demo.demo_worker`), its metrics (:mod:`zdu_demo.app_metrics`) and its
  migrations (``demo_db``);
* :func:`demo_app_command`, the application as a platform's ``command`` template;
* the demo's scenarios, traffic, rows and table (:mod:`zdu_demo.scenarios`), and wrk, the
  independent cross-check (:mod:`zdu_demo.crosscheck`);
* the hook through which ``zdu demo`` asks other platforms' plugins to run their scenarios
  (:mod:`zdu_demo.hookspecs`).
"""

from __future__ import annotations

import sys

__all__ = ["DEMO_APP_COMMAND", "demo_app_command"]

#: The demo application as a ``command`` template: ``{version}`` and ``{port}`` are filled in per instance.
DEMO_APP_COMMAND = (sys.executable, "-m", "zdu_demo.demo_app", "--version", "{version}", "--port", "{port}")


def demo_app_command(startup_delay: float, *options: str) -> list[str]:
    """The bundled demo app as a ``command`` template, listening on ``{host}``, with its start-up delay.

    ``options`` are more demo-app arguments (``--database PATH``, ``--fault 5xx``, ...).
    """
    return [*DEMO_APP_COMMAND, "--host", "{host}", "--startup-delay", str(startup_delay), *options]
