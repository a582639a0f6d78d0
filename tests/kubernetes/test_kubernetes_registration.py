"""The kubernetes plugin comes through its entry point, and names its extra when the client is missing."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from zdu.cli import cli


def test_zdu_plugins_lists_the_kubernetes_platform() -> None:
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    platforms = {p["name"] for p in json.loads(result.output)["platforms"]}
    assert "kubernetes" in platforms


def test_without_the_client_the_registry_names_the_extra_and_the_rest_works() -> None:
    code = (
        "import sys; sys.modules['kubernetes'] = None\n"
        "from zdu.registry import get_plugin_manager\n"
        "m = get_plugin_manager()\n"
        "print('|'.join(f.describe() for f in m.failures))\n"
        "print(sorted(m.platforms()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    failures, platforms = result.stdout.splitlines()
    assert "plugin 'kubernetes' from zdu failed to load" in failures
    assert "(install zdu[kubernetes])" in failures
    assert "kubernetes" not in platforms and "local" in platforms
