"""Helpers the tests share: where things are, the CLI in-process, JSON lines and results CSVs.

Test modules import them as `from helpers import run, EXAMPLES`; the hostile-input corpus is `helpers.hostile`,
a real `digitscan serve` subprocess is `helpers.live_server`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def run(*args) -> Result:
    """`digitscan ARGS...` in this process (paths and numbers may be passed as they are)."""
    from digitscan.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def json_lines(output: str) -> list[dict]:
    """The JSON records of a `--json` run's output, in order (other lines are skipped)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def read_rows(path: Path) -> list[dict]:
    """The rows of a batch job's results CSV."""
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))
