"""The house rules: imports only go down the layers, the code is lint-clean, the README's Layout block is the
tree."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "digitscan"
NOT_MODULES = {"__init__", "__main__"}


def tool(name: str) -> str:
    """A console script of this environment (the venv's bin, beside its python), else from PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else shutil.which(name) or name


def test_imports_follow_the_layer_contracts():
    result = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_ruff_is_clean():
    result = subprocess.run([tool("ruff"), "check", "--no-cache", "src", "tests", "benchmarks", "examples"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def layout_block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "README's Layout section has no code block"
    lines = block.group(1).splitlines()
    start = lines.index("src/digitscan/")
    package_lines = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):  # the next top-level folder (benchmarks/, docs/, ...)
            break
        package_lines.append(line.strip())
    return package_lines


def listed_names(line: str) -> list[str]:
    """The module names a Layout line lists: the words before the first run of two or more spaces that starts a
    description (descriptions are separated from the names by at least three spaces)."""
    names_part = re.split(r"\s{3,}", line.split("/", 1)[1].strip() if "/" in line.split()[0] else line)[0]
    return names_part.split()


def test_readme_layout_block_matches_the_tree():
    wings = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    top = {p.stem for p in PACKAGE.glob("*.py")} - NOT_MODULES
    seen_wings, seen_top = set(), set()
    for line in layout_block():
        first = line.split()[0]
        if first.endswith("/"):
            wing = first[:-1]
            folder = PACKAGE / wing
            assert folder.is_dir(), f"README lists {first} but src/digitscan/{first} does not exist"
            if wing in wings:
                modules = {p.stem for p in folder.glob("*.py")} - NOT_MODULES
                listed = set(listed_names(line))
                assert listed == modules, f"{first}: README lists {sorted(listed)}, the tree has {sorted(modules)}"
                seen_wings.add(wing)
        else:
            listed = set(listed_names(line))
            assert listed <= top, f"README lists top-level modules that do not exist: {sorted(listed - top)}"
            seen_top |= listed
    assert seen_wings == wings, f"wings missing from README's Layout: {sorted(wings - seen_wings)}"
    assert seen_top == top, f"top-level modules missing from README's Layout: {sorted(top - seen_top)}"


def test_wings_are_one_level_deep():
    for wing in PACKAGE.iterdir():
        if wing.is_dir() and (wing / "__init__.py").exists():
            nested = [p for p in wing.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
            assert not nested, f"{wing.name}/ has sub-packages {nested}: wings are one level deep"
