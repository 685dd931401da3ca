"""Helpers shared by the benchmark scripts: a description of the machine, and writing results as JSON + markdown.

Every benchmark prints a markdown table and writes benchmarks/results/NAME.{json,md} (ignored by git).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other processes on the machine: timings mean less
    }


def machine_line(info: dict | None = None) -> str:
    info = info or machine()
    load = f", load average {info['load_average_1min']} at the end" if "load_average_1min" in info else ""
    return (f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
            f"({info['torch_threads']} threads), Python {info['python']}, {info['date']}{load}")


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, data: dict, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown + "\n")
    print(markdown)
    return RESULTS / f"{name}.md"
