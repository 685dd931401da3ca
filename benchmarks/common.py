"""Helpers shared by the benchmark scripts: a description of the machine, writing results as JSON + markdown, and an
older revision's image modules to compare with in the same run.

Every benchmark prints a markdown table and writes benchmarks/results/NAME.{json,md} (ignored by git).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


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


def read_right_alone(recognizer, images: np.ndarray, fields: list[tuple[str, list[int]]]) -> list[bool]:
    """For each field (its digits, the indices of the digit images it was written with), whether the recognizer's
    digit model reads every one of those images right on its own, as the 28x28 MNIST-style image it was drawn
    from: no page, no photo, no cutting. A reader of the whole field cannot be expected to do better on a field
    where this is false. Taken as the model's top class (a digit it would reject is still read in a number)."""
    used = sorted({i for _, indices in fields for i in indices})
    if not used:
        return [False] * len(fields)
    predictions = recognizer.predict_inputs(images[used].astype(np.float32) / 255)
    top = {i: int(np.argmax(p.probabilities)) for i, p in zip(used, predictions)}
    return [len(text) == len(indices) and all(top[i] == int(d) for i, d in zip(indices, text))
            for text, indices in fields]


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


def baseline_image_package(revision: str):
    """digitscan.image's decode, ink and prepare modules as they were at `revision`, loaded from git under a private
    package name (so they import one another, not the current ones); their other imports are today's."""
    package = types.ModuleType("baseline_image")
    package.__path__ = []
    sys.modules["baseline_image"] = package
    folder = Path(tempfile.mkdtemp(prefix="baseline-image-"))
    modules = {}
    for name in ("jpeg", "decode", "ink", "prepare"):
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:src/digitscan/image/{name}.py"],
                                check=True, capture_output=True, text=True).stdout
        source = source.replace("from digitscan.image.", "from baseline_image.")
        path = folder / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"baseline_image.{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        modules[name] = module
    return modules
