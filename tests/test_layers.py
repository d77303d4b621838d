"""The tree keeps its boundaries: each package of `components` imports only what its docstring allows.

Every `components/<package>/__init__.py` says `May import:` (our packages) and, where it matters, `Never imports:`
(third-party libraries). This test reads those lines and every import statement in the package (at any depth, even
inside a function or under `TYPE_CHECKING`) and fails on the first one out of bounds. It also checks that no
engine imports another, and that `settings` imports nothing of ours, so the next cycle or shortcut fails CI by name.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

COMPONENTS = Path(__file__).resolve().parents[1] / "components"
PACKAGES = sorted(path.parent.name for path in COMPONENTS.glob("*/__init__.py"))
ENGINES = sorted(path.parent.name for path in (COMPONENTS / "engines").glob("*/__init__.py"))


def rule(package: str, heading: str, root: Path = COMPONENTS) -> set[str]:
    """The names a package's docstring lists after `heading` (`May import:` or `Never imports:`)."""
    docstring = ast.get_docstring(ast.parse((root / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    found = re.search(rf"^{heading}\s*(.+)$", docstring, re.MULTILINE)
    return {name.strip() for name in found.group(1).split(",")} if found else set()


def imports(path: Path, root: Path = COMPONENTS) -> list[tuple[int, str]]:
    """Every module a file imports, with its line (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.append((node.lineno, base))
    return found


def violations(package: str, root: Path = COMPONENTS) -> list[str]:
    allowed = rule(package, "May import:", root) | {package}
    never = rule(package, "Never imports:", root)
    found = []
    for path in sorted((root / package).rglob("*.py")):
        engine = path.relative_to(root / "engines").parts[0] if package == "engines" else None
        for line, module in imports(path, root):
            parts = module.split(".")
            where = f"{path.relative_to(root.parent)}:{line} imports {module}"
            if parts[0] == "components" and len(parts) > 1:
                if parts[1] not in allowed:
                    found.append(f"{where}, but {package}/ may import only {', '.join(sorted(allowed))}")
                elif parts[1] == "engines" and len(parts) > 2 and parts[2] in ENGINES and parts[2] != engine:
                    found.append(f"{where}: an engine never imports another")
            elif parts[0] in never:
                found.append(f"{where}, which {package}/ never imports")
    return found


def test_every_package_states_what_it_may_import() -> None:
    assert PACKAGES, "no packages found under components/"
    unstated = [package for package in PACKAGES if not rule(package, "May import:")]
    assert unstated == [], f"packages whose docstring has no 'May import:' line: {unstated}"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_imports_only_what_it_may(package: str) -> None:
    assert violations(package) == []


def test_settings_is_the_bottom_layer() -> None:
    ours = [module for _, module in imports(COMPONENTS / "settings.py") if module.startswith("components")]
    assert ours == []


def test_the_check_itself_catches_a_forbidden_import(tmp_path: Path) -> None:
    """On a copy of the tree: the restaurant reaching for the store (the old cycle), one engine importing another
    (even inside a function) and the call importing fastrtc are each caught."""
    root = Path(shutil.copytree(COMPONENTS, tmp_path / "components"))
    (root / "restaurant" / "probe.py").write_text("from components.store.reservations import ReservationStore\n")
    (root / "engines" / "realtime" / "probe.py").write_text("def f():\n    from ..pipeline import handler\n")
    (root / "call" / "probe.py").write_text("import fastrtc\n")
    assert violations("restaurant", root) == [
        (
            "components/restaurant/probe.py:1 imports components.store.reservations, but restaurant/ may import "
            "only restaurant, settings"
        )
    ]
    assert violations("engines", root) == [
        "components/engines/realtime/probe.py:2 imports components.engines.pipeline: an engine never imports another"
    ]
    assert violations("call", root) == ["components/call/probe.py:1 imports fastrtc, which call/ never imports"]
