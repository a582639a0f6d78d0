"""The local platform's assets store: one directory holding the fingerprinted assets of several versions.

It is the backend of the ``assets-shim`` traffic layer on the local platform. nginx serves
``/assets/`` straight from :attr:`DirectoryAssetStore.files_dir` once the router is told to
(:meth:`~zdu_local.router.NginxRouter.route_assets`), so while two versions serve, a page rendered by
either finds its assets. The layout under the store's root (``<state dir>/assets``)::

    files/          what nginx serves as /assets/ (every published version's files side by side)
    manifest.json   {"versions": {"16.5.0": ["application-<hash>.css", ...], ...}}
    store.lock      held while the store changes

:meth:`DirectoryAssetStore.publish` runs the configured ``assets_command`` into a fresh directory next
to ``files/`` (the same filesystem), then moves each file in with an atomic rename and only then
records the version in the manifest: a reader sees a file whole or not at all, and a version is listed
only once every one of its files is in place. Fingerprinted names make this safe: a name already in
``files/`` has the same content whoever wrote it. Versions may share files (an asset that did not
change keeps its fingerprint), so :meth:`DirectoryAssetStore.prune` removes only the files that no
kept version lists.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from zdu.plugins import PlatformError, Version, replace_atomically, tail

__all__ = ["DirectoryAssetStore"]

logger = logging.getLogger("zdu.local")

_COMMAND_TIMEOUT = 120.0


class DirectoryAssetStore:
    """The :class:`zdu.platform.AssetStore` of the local platform: a directory nginx serves.

    :param root: the store's directory (created on first publish).
    :param command: builds the command line that writes the assets of a version (first argument)
        into a directory (second argument); run without a shell.
    :param env: the environment of that command.
    """

    def __init__(self, root: Path, command: Callable[[str, str], list[str]], env: Mapping[str, str]) -> None:
        self.root = root.resolve()
        self._command = command
        self._env = dict(env)

    @property
    def files_dir(self) -> Path:
        """The directory served as ``/assets/``."""
        return self.root / "files"

    @property
    def manifest_path(self) -> Path:
        """The manifest: which files each published version has."""
        return self.root / "manifest.json"

    # -- the AssetStore protocol ---------------------------------------------------------------------

    def publish(self, version: Version) -> None:
        """Add ``version``'s assets to the store; nothing to do when they are all there already."""
        with self._locked():
            manifest = self._manifest()
            files = manifest.get(str(version))
            if files is not None and all((self.files_dir / name).is_file() for name in files):
                logger.debug("the assets of %s are published already", version)
                return
            self.files_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".publish-"))
            try:
                names = self._export(version, staging)
                for name in names:
                    target = self.files_dir / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    (staging / name).replace(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            self._save({**manifest, str(version): names})
            logger.info("published %d assets of %s to %s", len(names), version, self.files_dir)

    def versions(self) -> list[Version]:
        """The versions whose assets are published, oldest first."""
        return sorted(Version.parse(text) for text in self._manifest())

    def prune(self, keep: Sequence[Version]) -> None:
        """Remove the assets of every version not in ``keep`` (files a kept version lists stay)."""
        with self._locked():
            manifest = self._manifest()
            kept = {text: names for text, names in manifest.items() if Version.parse(text) in keep}
            if kept != manifest:
                gone = sorted(set(manifest) - set(kept))
                logger.info("pruning the assets of %s (keeping %s)", ", ".join(gone), ", ".join(sorted(kept)))
                self._save(kept)
            # Every file no kept version lists goes, also those a crash left behind.
            wanted = {name for names in kept.values() for name in names}
            for path in self._files():
                if path.relative_to(self.files_dir).as_posix() not in wanted:
                    path.unlink(missing_ok=True)
            self._remove_empty_directories()

    # -- sizes, for reports --------------------------------------------------------------------------

    def size(self, version: Version) -> int:
        """Bytes the files of ``version`` take (shared files counted in full); 0 when not published."""
        names = self._manifest().get(str(version), [])
        return sum(
            (self.files_dir / name).stat().st_size for name in names if (self.files_dir / name).exists()
        )

    def total_size(self) -> int:
        """Bytes every file in the store takes."""
        return sum(path.stat().st_size for path in self._files())

    # -- the work ------------------------------------------------------------------------------------

    def _export(self, version: Version, directory: Path) -> list[str]:
        """Run the assets command into ``directory``; return the relative paths of the files it wrote."""
        command = self._command(str(version), str(directory))
        log = self.root / "publish.log"
        try:
            with log.open("w+", encoding="utf-8") as output:
                done = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    timeout=_COMMAND_TIMEOUT,
                    check=False,
                )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PlatformError(
                f"cannot export the assets of {version}: {' '.join(command)}: {error}"
            ) from error
        if done.returncode != 0:
            raise PlatformError(
                f"exporting the assets of {version} failed (exit code {done.returncode}): "
                f"{' '.join(command)}: {tail(log, 5) or 'no output'}"
            )
        names = sorted(
            path.relative_to(directory).as_posix()
            for path in directory.rglob("*")
            if path.is_file() and not path.is_symlink()
        )
        if not names:
            raise PlatformError(
                f"exporting the assets of {version} wrote no file into {{dir}}: {' '.join(command)}"
            )
        return names

    def _files(self) -> Iterator[Path]:
        if self.files_dir.is_dir():
            yield from (path for path in self.files_dir.rglob("*") if path.is_file() or path.is_symlink())

    def _remove_empty_directories(self) -> None:
        if not self.files_dir.is_dir():
            return
        for path in sorted(self.files_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()  # only when empty

    def _manifest(self) -> dict[str, list[str]]:
        try:
            document = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as error:
            raise PlatformError(f"cannot read the assets manifest {self.manifest_path}: {error}") from error
        versions = document.get("versions") if isinstance(document, dict) else None
        if not isinstance(versions, dict):
            raise PlatformError(f"the assets manifest {self.manifest_path} has no 'versions' table")
        return {str(text): [str(name) for name in names] for text, names in versions.items()}

    def _save(self, manifest: Mapping[str, list[str]]) -> None:
        text = json.dumps({"versions": dict(sorted(manifest.items()))}, indent=2, sort_keys=True)
        replace_atomically(self.manifest_path, text + "\n")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.root / "store.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)
