"""The package layering of docs/ARCHITECTURE.md ("Layers"), checked on the source: every import
statement of every module under bridge/ (top level and inside functions) is read from its AST.

* each unit (a sub-package, or a top-level module) imports only the units its row of ALLOWED names;
  nothing imports upward, and the units form no import cycle;
* torch, aiohttp, zeroconf and Ray are imported only where THIRD_PARTY allows;
* importing the daemon, the client and the command line's parser loads none of them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "bridge"

# The base: imported by everything, importing only each other (standard library + numpy).
BASE = {"bridge", "errors", "protocol", "osc", "shm", "config"}
_MODEL = {"util", "formats", "pose", "cards"}
# unit -> the units it may import (besides itself and the base), lowest first. A unit is a
# sub-package of bridge/ or a top-level module; the base modules are one unit, "base".
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "util": set(),
    "formats": {"util"},
    "pose": {"util", "formats"},
    "cards": {"util"},
    "densepose": _MODEL,
    "generator": _MODEL | {"densepose"},
    "stages": _MODEL | {"densepose", "generator"},
    "engines": _MODEL | {"densepose", "generator", "stages"},
    "daemon": _MODEL | {"stages", "engines"},
    "transports": _MODEL | {"stages", "engines", "daemon"},
    "server": _MODEL | {"stages", "engines", "daemon", "transports"},
    "client": {"daemon"},  # only bridge.daemon.stats (CLIENT_MODULES): the client stays light
    "datasets": _MODEL | {"densepose"},
    "train": _MODEL | {"generator"},
    "puppet": _MODEL | {"densepose", "generator", "datasets", "train"},
    "cli": _MODEL | {"densepose", "generator", "stages", "engines", "daemon", "transports", "server", "client",
                     "datasets", "train", "puppet"},
    "__main__": {"cli"},
}
CLIENT_MODULES = {"bridge.daemon.stats"}  # what bridge.client may import beyond the base
# Heavy or optional third-party packages, and the only units that may import them (at any depth).
THIRD_PARTY: dict[str, set[str]] = {
    "torch": {"densepose", "generator", "stages", "train", "puppet"},
    "torchvision": {"densepose"},
    "aiohttp": {"transports"},
    "zeroconf": {"daemon"},
    "ray": {"engines"},
    "ai_edge_litert": {"pose"},  # the camera tracker's runtime (bridge.pose.tracker.runtime)
}


def unit_of(module: str) -> str:
    """``bridge.daemon.control`` -> ``daemon``; ``bridge.server`` -> ``server``; the base -> ``base``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE:
        return "base"
    return parts[1]


def modules() -> dict[str, tuple[Path, bool]]:
    """Every module under bridge/: its dotted name -> (file, whether it is a package's __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imports(name: str, path: Path, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``path``: bridge modules resolved to their full
    name (``from . import x`` names the module ``x`` where it is one), others as written."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if sub in known else target))
    return found


def violations(found: dict[str, tuple[Path, bool]]) -> list[str]:
    known = set(found)
    bad = []
    for name, (path, is_package) in found.items():
        unit = unit_of(name)
        for line, target in imports(name, path, is_package, known):
            where = f"{path.name}:{line}: {name} imports {target}"
            top = target.split(".")[0]
            if top == "bridge":
                other = unit_of(target)
                if other in (unit, "base"):
                    continue
                if other not in ALLOWED[unit]:
                    bad.append(f"{where} (the {unit} layer may not import {other})")
                elif unit == "client" and target not in CLIENT_MODULES:
                    bad.append(f"{where} (bridge.client may import only the base and {sorted(CLIENT_MODULES)})")
            elif top in THIRD_PARTY and unit not in THIRD_PARTY[top]:
                bad.append(f"{where} ({top} is imported only by {sorted(THIRD_PARTY[top])})")
    return bad


def unit_cycles(found: dict[str, tuple[Path, bool]]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in found.items():
        for _, target in imports(name, path, is_package, set(found)):
            if target.split(".")[0] == "bridge" and unit_of(target) != unit_of(name):
                graph.setdefault(unit_of(name), set()).add(unit_of(target))
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def test_every_unit_has_a_row() -> None:
    units = {unit_of(name) for name in modules()}
    assert units <= set(ALLOWED), f"units without a layering rule: {sorted(units - set(ALLOWED))}"


def test_allowed_imports_form_layers() -> None:
    """The rules themselves: nothing may import the command line but __main__, and no two
    units may import each other (so ``nothing imports upward`` has a meaning)."""
    for unit, allowed in ALLOWED.items():
        assert "cli" not in allowed or unit == "__main__"
        for other in allowed:
            assert unit not in ALLOWED[other], f"{unit} and {other} may import each other"


def test_imports_follow_the_layers() -> None:
    bad = violations(modules())
    assert not bad, "layering violations (docs/ARCHITECTURE.md, Layers):\n" + "\n".join(bad)


def test_no_import_cycles_between_units() -> None:
    assert not unit_cycles(modules())


def test_a_violation_is_caught(tmp_path: Path) -> None:
    """The check is not vacuous: a daemon module that imports torch, the command line and a
    transport breaks three rules, and a unit that imports its importer makes a cycle."""
    probe = tmp_path / "probe.py"
    probe.write_text("import torch\nfrom ..cli import main\nfrom ..transports import http\n")
    found = {**modules(), "bridge.daemon.probe": (probe, False)}
    bad = [b for b in violations(found) if "bridge.daemon.probe" in b]
    assert len(bad) == 3, bad
    assert unit_cycles(found)


@pytest.mark.parametrize("code, heavy", [
    ("import bridge.server", ("torch", "aiohttp", "zeroconf", "ray")),
    ("import bridge.client", ("torch", "aiohttp", "zeroconf", "ray", "cv2", "PIL")),
    ("import bridge.shm", ("torch", "aiohttp", "zeroconf", "ray", "cv2", "PIL")),
    ("from bridge.cli.main import build_parser; build_parser()", ("torch", "aiohttp", "zeroconf", "ray", "PIL")),
])
def test_light_imports_stay_light(code: str, heavy: tuple[str, ...]) -> None:
    check = f"import sys; {code}; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{code!r} loaded {done.stdout.strip()}"
