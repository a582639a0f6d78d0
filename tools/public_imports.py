"""Rewrite imports of zdu's core in plugins to the public plugin API, ``zdu.plugins``.

Usage (from the repository root)::

    python tools/public_imports.py                     # plugins/ and bench/
    python tools/public_imports.py --moves-only tests  # only follow moved modules (tests may use the core)

Every ``from zdu.<module> import X`` (and ``from zdu import X``) in the files given is rewritten to
``from zdu.plugins import X``; the zdu imports of one block (a module, a function, an ``if
TYPE_CHECKING:``) are merged into one import, names sorted. Imports of modules that moved out of a
plugin (:data:`MOVED`) are first pointed at their new home. A name :mod:`zdu.plugins` does not export
(its ``__all__``, read from the source) is an error naming it and the file: export it from the façade
first. ``import zdu.x`` is an error too (write ``from zdu.plugins import ...``).

The rewrite is idempotent: a second run changes nothing. Run ``ruff check --fix`` and ``ruff format``
after it (the script runs them on the files it changed when it finds ruff).
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FACADE = ROOT / "zdu" / "plugins.py"
LINE_LENGTH = 110

#: Where names that moved out of a plugin live now: (old module, name or "*") -> new module.
MOVED: dict[tuple[str, str], str] = {
    ("zdu_local.processes", "*"): "zdu.processes",
    ("zdu_local.network", "*"): "zdu.network",
    ("zdu_migrations.executor", "*"): "zdu.executor",
    ("zdu_local.demo_app", "*"): "zdu_demo.demo_app",
    ("zdu_local.demo_worker", "*"): "zdu_demo.demo_worker",
    ("zdu_local.app_metrics", "*"): "zdu_demo.app_metrics",
    ("zdu_local.crosscheck", "*"): "zdu_demo.crosscheck",
    ("zdu_local.config", "demo_app_command"): "zdu_demo",
    **{
        ("zdu_local.demo", name): "zdu_demo.scenarios"
        for name in (
            "BAD_RELEASE_FAULT",
            "CHAIN_START_VERSION",
            "DEFAULT_SCENARIOS",
            "MIGRATIONS",
            "ROLES",
            "START_VERSION",
            "STARTUP_DELAY_S",
            "DemoRow",
            "DemoSettings",
            "DemoTraffic",
            "Scenario",
            "blast_radius",
            "create_database",
            "create_mixed_database",
            "label",
            "next_release",
            "render_table",
        )
    },
    ("zdu_local.demo", "_config"): "zdu_local.demo",  # renamed, see RENAMED
}

#: Private names given public ones: (module, old name) -> new name.
RENAMED: dict[tuple[str, str], str] = {("zdu_local.demo", "_config"): "demo_config"}


class RewriteError(Exception):
    """An import the script cannot rewrite (a name the façade lacks, ``import zdu.x``)."""


def facade_names() -> set[str]:
    """The names ``zdu.plugins`` exports: its ``__all__``, read from the source without importing it."""
    tree = ast.parse(FACADE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    raise RewriteError(f"{FACADE}: no __all__")


def _is_core(module: str | None) -> bool:
    return module is not None and (module == "zdu" or module.startswith("zdu."))


def _bodies(tree: ast.AST) -> Iterator[list[ast.stmt]]:
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body
        for handler in getattr(node, "handlers", []) or []:
            yield handler.body


def _alias(name: str, asname: str | None) -> str:
    return name if asname is None or asname == name else f"{name} as {asname}"


def _sort_key(text: str) -> tuple[int, str]:
    name = text.split(" as ", maxsplit=1)[0]
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return (kind, name)


def _render(module: str, names: Iterable[str], indent: str, comment: str) -> str:
    ordered = sorted(set(names), key=_sort_key)
    suffix = f"  {comment}" if comment else ""
    line = f"{indent}from {module} import {', '.join(ordered)}{suffix}"
    if len(line) <= LINE_LENGTH:
        return line
    inner = "".join(f"{indent}    {n},\n" for n in ordered)
    return f"{indent}from {module} import ({suffix}\n{inner}{indent})"


def _comment(lines: list[str], node: ast.stmt) -> str:
    last = lines[node.end_lineno - 1]  # type: ignore[operator]
    code_end = node.end_col_offset or 0
    rest = last[code_end:].strip()
    return rest if rest.startswith("#") else ""


def _apply_moves(source: str, path: Path) -> str:
    tree = ast.parse(source)
    lines = source.splitlines()
    edits: list[tuple[int, int, str]] = []
    renamed: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.module is None or node.level:
            continue
        aliases = {(a.name, a.asname) for a in node.names}
        targets: dict[str, list[str]] = {}
        changed = False
        for a in node.names:
            new_module = MOVED.get((node.module, a.name)) or MOVED.get((node.module, "*")) or node.module
            new_name = RENAMED.get((node.module, a.name), a.name)
            changed |= new_module != node.module or new_name != a.name
            asname = a.asname if a.asname else (a.name if new_name != a.name else None)
            if new_name != a.name and asname == a.name:
                asname = None  # the new public name replaces the private one everywhere below
            targets.setdefault(new_module, []).append(_alias(new_name, asname))
        if not changed:
            continue
        indent = " " * node.col_offset
        comment = _comment(lines, node)
        text = "\n".join(_render(m, names, indent, comment) for m, names in targets.items())
        edits.append((node.lineno, node.end_lineno or node.lineno, text))
        renamed |= {
            old[1]: new for old, new in RENAMED.items() if old[0] == node.module and (old[1], None) in aliases
        }
    result = _splice(lines, edits, source)
    for old_name, new_name in renamed.items():  # the uses of a private name given a public one
        result = re.sub(rf"(?<![\w.]){re.escape(old_name)}(?!\w)", new_name, result)
    return result


def _splice(lines: list[str], edits: list[tuple[int, int, str]], source: str) -> str:
    if not edits:
        return source
    for start, end, text in sorted(edits, reverse=True):
        lines[start - 1 : end] = text.split("\n") if text else []
    return "\n".join(lines) + ("\n" if source.endswith("\n") else "")


def rewrite(source: str, path: Path, exported: set[str]) -> str:
    """``source`` with its core imports pointed at ``zdu.plugins``, merged per block."""
    tree = ast.parse(source)
    lines = source.splitlines()
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems += [
                f"{path}:{node.lineno}: 'import {a.name}': write 'from zdu.plugins import ...'"
                for a in node.names
                if _is_core(a.name) and a.name != "zdu.plugins"
            ]
    edits: list[tuple[int, int, str]] = []
    for body in _bodies(tree):
        imports = [s for s in body if isinstance(s, ast.ImportFrom) and not s.level and _is_core(s.module)]
        if not any(s.module != "zdu.plugins" for s in imports):
            continue
        names: list[str] = []
        comment = ""
        for statement in imports:
            comment = comment or _comment(lines, statement)
            for a in statement.names:
                if a.name not in exported:
                    problems.append(
                        f"{path}:{statement.lineno}: {a.name} (from {statement.module}) is not exported by "
                        "zdu.plugins: add it to the façade's imports and __all__"
                    )
                names.append(_alias(a.name, a.asname))
        first = imports[0]
        edits.append(
            (
                first.lineno,
                first.end_lineno or first.lineno,
                _render("zdu.plugins", names, " " * first.col_offset, comment),
            )
        )
        edits += [(s.lineno, s.end_lineno or s.lineno, "") for s in imports[1:]]
    if problems:
        raise RewriteError("\n".join(problems))
    return _splice(lines, edits, source)


def python_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The ``.py`` files under ``paths`` (files given are taken as they are)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if ".venv" not in p.parts)
        elif path.suffix == ".py":
            yield path


def main(argv: list[str] | None = None) -> int:
    """Rewrite the files; exit 1 naming every import that cannot be rewritten."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="default: plugins/ and bench/")
    parser.add_argument("--moves-only", action="store_true", help="only follow moved modules and names")
    args = parser.parse_args(argv)
    paths = args.paths or [ROOT / "plugins", ROOT / "bench"]
    exported = facade_names()
    changed: list[Path] = []
    errors: list[str] = []
    for path in python_files(paths):
        source = path.read_text(encoding="utf-8")
        try:
            new = _apply_moves(source, path)
            if not args.moves_only:
                new = rewrite(new, path, exported)
        except RewriteError as error:
            errors.append(str(error))
            continue
        if new != source:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    for path in changed:
        print(f"rewrote {path}")
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if changed and ruff:
        subprocess.run([ruff, "check", "--fix", "--select", "I,F401", "-q", *map(str, changed)], check=False)
        subprocess.run([ruff, "format", "-q", *map(str, changed)], check=False)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
