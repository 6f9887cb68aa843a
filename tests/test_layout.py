"""The module tree stays readable: no import cycles, no oversized module, and the daemon
imports nothing from the trainer (a daemon-only install must run without it)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 420  # "about 400": a module past this is split by what it does


def _modules() -> dict[str, Path]:
    mods = {}
    for top in ("daemon", "trainer"):
        for p in (REPO / top).rglob("*.py"):
            parts = p.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods["intentd." + ".".join(parts)] = p
    return mods


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """intentd modules ``path`` imports at run time (``if TYPE_CHECKING:`` blocks skipped;
    imports inside functions count: they are cycles too, only later)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in known}


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {m: _imports(p, mods) - {m} for m, p in mods.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d):], d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert cycles == []


def test_no_module_over_about_400_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in _modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_daemon_imports_nothing_from_the_trainer() -> None:
    mods = _modules()
    leaks = {m: sorted(d for d in _imports(p, mods) if d.startswith("intentd.trainer"))
             for m, p in mods.items() if m.startswith("intentd.daemon")}
    assert {m: d for m, d in leaks.items() if d} == {}
