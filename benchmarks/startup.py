"""Cold start: one image through `digitscan predict` / `read` as a fresh process, against a bare Python start.

Run: `.venv/bin/python benchmarks/startup.py` (under a minute). Each command runs --runs times, interleaved (so a
busy moment of the machine hits every command alike); the median wall time counts. The floor is
`python -c "import numpy, PIL.Image"`: what any Python tool that opens an image pays. `predict` and `read` run the
shipped models on onnxruntime (the default, no PyTorch import); `--backend torch` is the PyTorch path beside them.
Writes benchmarks/results/startup.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
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
    args = parser.parse_args()
    times = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
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
        f"Command: `.venv/bin/python benchmarks/startup.py --runs {args.runs}`",
    ])
    write_results("startup", {"machine": info, "runs": args.runs, "commands": results}, markdown)


if __name__ == "__main__":
    main()
