"""Cold start: one image through `digitscan predict` / `read` as a fresh process, against a bare Python start.

Run: `.venv/bin/python benchmarks/startup.py` (under a minute). Each command runs --runs times, interleaved (so a
busy moment of the machine hits every command alike); the median wall time counts. The floor is
`python -c "import numpy, PIL.Image"`: what any Python tool that opens an image pays. `predict` and `read` run the
shipped models on onnxruntime (the default, no PyTorch import); `--backend torch` is the PyTorch path beside them.
`--baseline REV` adds `predict` as that git revision runs it (its src/ checked out into a temporary worktree and put
first on PYTHONPATH), interleaved with the rest: a before/after in one run, where the bare start itself moves by
a third between runs on a shared machine. Writes benchmarks/results/startup.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, machine_line, markdown_table, write_results

REPO = Path(__file__).resolve().parents[1]
DIGIT = REPO / "examples" / "seven_ink_on_paper.png"
NUMBER = REPO / "examples" / "numbers" / "zip_90210.png"
COMMANDS = {
    'python -c "import numpy, PIL.Image"': [sys.executable, "-c", "import numpy, PIL.Image"],
    "digitscan predict one.png": [sys.executable, "-m", "digitscan", "predict", str(DIGIT)],
    "digitscan read one.png": [sys.executable, "-m", "digitscan", "read", str(NUMBER)],
    "digitscan predict --backend torch one.png": [sys.executable, "-m", "digitscan", "predict", "--backend", "torch",
                                                  str(DIGIT)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--baseline", help="git revision whose `predict` is timed beside today's")
    args = parser.parse_args()
    commands = {name: (command, None) for name, command in COMMANDS.items()}
    with tempfile.TemporaryDirectory(prefix="startup-baseline-") as folder:
        if args.baseline:
            tree = Path(folder) / "tree"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline],
                           check=True, capture_output=True)
            commands[f"digitscan predict one.png at {args.baseline}"] = (
                COMMANDS["digitscan predict one.png"], str(tree / "src"))
        try:
            times = _time(commands, args.runs)
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=True)
    bare = statistics.median(next(iter(times.values())))
    rows, results = [], []
    for name, values in times.items():
        median = statistics.median(values)
        results.append({"command": name, "median_s": median, "min_s": min(values), "x_bare": median / bare})
        rows.append([f"`{name}`", f"{median:.3f}", f"{min(values):.3f}", f"×{median / bare:.1f}"])
    info = machine()
    markdown = "\n".join([
        markdown_table(["command", "median (s)", "fastest (s)", "÷ bare Python"], rows), "",
        f"Each a fresh process, {args.runs} runs interleaved; one.png is examples/seven_ink_on_paper.png "
        "(read: examples/numbers/zip_90210.png).",
        machine_line(info),
        f"Command: `.venv/bin/python benchmarks/startup.py --runs {args.runs}"
        + (f" --baseline {args.baseline}`" if args.baseline else "`"),
    ])
    write_results("startup", {"machine": info, "runs": args.runs, "baseline": args.baseline, "commands": results},
                  markdown)


def _time(commands: dict[str, tuple[list[str], str | None]], runs: int) -> dict[str, list[float]]:
    """Wall seconds of each command, `runs` times, interleaved; a command's path (if any) goes first on PYTHONPATH."""
    times = {name: [] for name in commands}
    for _ in range(runs):
        for name, (command, path) in commands.items():
            env = dict(os.environ, PYTHONPATH=path) if path else None
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            times[name].append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
