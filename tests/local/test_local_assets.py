"""The local platform's assets store: a directory of several versions' fingerprinted files."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import cattrs
import pytest

from zdu.errors import PlatformError
from zdu.model import Version
from zdu.platform import AssetStore
from zdu_demo.demo_app import asset_hash
from zdu_local.assets import DirectoryAssetStore
from zdu_local.config import LocalPlatformConfig
from zdu_local.platform import LocalPlatform

V1, V2, V3 = (Version.parse(v) for v in ("16.5.0", "16.6.0", "16.7.0"))

# Writes "<version>.js", a "shared.css" every version has (an asset that did not change keeps its
# fingerprint), and counts its runs in "runs" next to the store.
EXPORT = """
import pathlib, sys
directory, version = pathlib.Path(sys.argv[1]), sys.argv[2]
runs = pathlib.Path(sys.argv[3])
runs.write_text(runs.read_text() + version + "\\n" if runs.exists() else version + "\\n")
if version == "9.9.9":
    sys.exit("cannot build the assets of " + version)
if version != "0.0.1":
    (directory / "js").mkdir()
    (directory / "js" / (version + ".js")).write_text("/* " + version + " */")
    (directory / "shared.css").write_text("body {}")
"""


@pytest.fixture
def store(tmp_path: Path) -> DirectoryAssetStore:
    runs = tmp_path / "runs"

    def command(version: str, directory: str) -> list[str]:
        return [sys.executable, "-c", EXPORT, directory, version, str(runs)]

    return DirectoryAssetStore(tmp_path / "assets", command, {})


def runs(store: DirectoryAssetStore) -> list[str]:
    path = store.root.parent / "runs"
    return path.read_text().split() if path.exists() else []


def files(store: DirectoryAssetStore) -> list[str]:
    return sorted(
        p.relative_to(store.files_dir).as_posix() for p in store.files_dir.rglob("*") if p.is_file()
    )


def test_publish_puts_versions_side_by_side_once(store: DirectoryAssetStore) -> None:
    assert isinstance(store, AssetStore)
    assert store.versions() == []
    store.publish(V2)
    store.publish(V1)
    store.publish(V2)  # idempotent: the command does not run again
    assert runs(store) == ["16.6.0", "16.5.0"]
    assert store.versions() == [V1, V2]  # oldest first
    assert files(store) == ["js/16.5.0.js", "js/16.6.0.js", "shared.css"]
    assert (store.files_dir / "js" / "16.6.0.js").read_text() == "/* 16.6.0 */"
    manifest = json.loads(store.manifest_path.read_text())
    assert manifest["versions"]["16.6.0"] == ["js/16.6.0.js", "shared.css"]
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []  # no staging left
    assert store.size(V1) == len("/* 16.5.0 */") + len("body {}")


def test_a_file_gone_missing_is_published_again(store: DirectoryAssetStore) -> None:
    store.publish(V1)
    (store.files_dir / "js" / "16.5.0.js").unlink()
    store.publish(V1)
    assert runs(store) == ["16.5.0", "16.5.0"]
    assert (store.files_dir / "js" / "16.5.0.js").exists()


def test_prune_keeps_the_files_a_kept_version_shares(store: DirectoryAssetStore) -> None:
    for version in (V1, V2, V3):
        store.publish(version)
    (store.files_dir / "js" / "left-by-a-crash.js").write_text("")
    store.prune([V2, V3])
    assert store.versions() == [V2, V3]
    assert files(store) == ["js/16.6.0.js", "js/16.7.0.js", "shared.css"]
    store.prune([V2, V3])  # idempotent
    store.prune([V3])
    assert files(store) == ["js/16.7.0.js", "shared.css"]
    store.prune([])
    assert store.versions() == [] and files(store) == []


def test_a_failed_export_publishes_nothing(store: DirectoryAssetStore) -> None:
    store.publish(V1)
    with pytest.raises(
        PlatformError, match=r"(?s)exporting the assets of 9\.9\.9 failed \(exit code 1\).*cannot build"
    ):
        store.publish(Version.parse("9.9.9"))
    with pytest.raises(PlatformError, match=r"wrote no file"):
        store.publish(Version.parse("0.0.1"))
    assert store.versions() == [V1]
    assert files(store) == ["js/16.5.0.js", "shared.css"]
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []


def test_the_local_platform_publishes_the_demo_apps_assets(
    make_platform: Callable[..., LocalPlatform],
) -> None:
    platform = make_platform(replicas=1)
    store = platform.assets
    assert store is not None and store.root == platform.state_dir / "assets"
    store.publish(V1)
    assert files(store) == [
        f"application-{asset_hash('16.5.0')}.css",
        f"application-{asset_hash('16.5.0')}.js",
    ]


def test_an_empty_assets_command_means_no_store(make_platform: Callable[..., LocalPlatform]) -> None:
    assert make_platform(assets_command=[]).assets is None


def test_a_bad_placeholder_in_the_assets_command_is_refused() -> None:
    with pytest.raises(cattrs.ClassValidationError) as raised:
        cattrs.structure({"assets_command": ["export", "{directory}"]}, LocalPlatformConfig)
    assert "the placeholders are {dir} and {version}" in str(raised.value.exceptions[0])
