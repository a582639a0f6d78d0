"""Run the real ``nginx -t`` on the configuration a local platform's router generated."""

from __future__ import annotations

import subprocess

from zdu_local.platform import LocalPlatform


def nginx_t(platform: LocalPlatform) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` under the router's own prefix, configuration and error log."""
    nginx = platform.router.nginx
    return subprocess.run(
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
