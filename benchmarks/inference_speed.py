"""Inference speed: batch throughput, single-image latency and compute efficiency of `paper` and the shipped model,
and the shipped model on onnxruntime beside PyTorch.

Run: `.venv/bin/python benchmarks/inference_speed.py` (~1.5 min). Efficiency = FLOPs per image (counted with
torch.utils.flop_counter on the BN-folded model) x images/s ÷ peak fp32 matmul FLOP/s measured in this same run.
onnxruntime runs the model exported by `digitscan export`, with as many intra-op threads as PyTorch uses, on the
same batches in the same run. Also times `digitscan predict` on one image end to end, Python start-up included,
with the checkpoint (PyTorch) and with the .onnx file (no PyTorch import).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from common import machine, machine_line, markdown_table, write_results
from digitscan.models.architectures import SHIPPED_ARCH, build_model, fuse_for_inference
from digitscan.models.backends import OnnxBackend
from digitscan.models.checkpoint import load_checkpoint
from digitscan.models.export import export_onnx
from digitscan.recognize import Recognizer

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "seven_ink_on_paper.png"


def peak_matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 FLOP/s of an n x n matmul: the compute-bound ceiling of this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def flops_per_image(model: torch.nn.Module) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    return counter.get_total_flops()


@torch.inference_mode()
def throughput(model: torch.nn.Module, batch: int, seconds: float = 3.0) -> float:
    x = torch.rand(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        model(x)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model(x)
        done += batch
    return done / (time.perf_counter() - start)


def onnx_throughput(backend: OnnxBackend, batch: int, seconds: float = 3.0) -> float:
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    feed = {backend.input_name: x}
    for _ in range(3):
        backend.session.run(None, feed)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend.session.run(None, feed)
        done += batch
    return done / (time.perf_counter() - start)


def latencies_ms(call, n: int = 300) -> tuple[float, float]:
    for _ in range(10):
        call()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def cli_predict_seconds(*options: str, repeats: int = 5) -> float:
    command = [sys.executable, "-m", "digitscan", "predict", *options, str(EXAMPLE)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()

    peak = peak_matmul_flops()
    print(f"peak fp32 matmul: {peak / 1e9:.0f} GFLOP/s", flush=True)
    models = {"paper": fuse_for_inference(build_model("paper")),
              f"shipped ({SHIPPED_ARCH})": fuse_for_inference(load_checkpoint().model)}
    recognizer = Recognizer.load()
    digit = np.zeros((28, 28), np.float32)
    digit[6:22, 12:16] = 1.0  # a "1": any ink will do, the cost does not depend on the content

    rows, results = [], {}
    for name, model in models.items():
        flops = flops_per_image(model)
        rates = {b: throughput(model, b) for b in args.batches}
        best_batch = max(rates, key=rates.get)
        x1 = torch.rand(1, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            p50, p99 = latencies_ms(lambda: model(x1))  # noqa: B023  (called here, inside this iteration)
        efficiency = flops * rates[best_batch] / peak
        results[name] = {"flops_per_image": flops, "images_per_s": rates, "latency_ms_p50": p50,
                         "latency_ms_p99": p99, "efficiency": efficiency}
        rows.append([name, f"{flops / 1e6:.1f}", " / ".join(f"{rates[b]:,.0f}" for b in args.batches),
                     f"{p50:.2f} / {p99:.2f}", f"{efficiency:.0%}"])
        print(rows[-1], flush=True)
    api_p50, api_p99 = latencies_ms(lambda: recognizer.predict(digit))
    cli_seconds = cli_predict_seconds()

    # The shipped model on onnxruntime, same batches, same thread count, same run: the ratios are what matters.
    onnx_file = Path(tempfile.mkdtemp()) / "shipped.onnx"
    export_onnx(load_checkpoint(), onnx_file)
    session = OnnxBackend(onnx_file, threads=torch.get_num_threads())
    torch_rates = results[f"shipped ({SHIPPED_ARCH})"]["images_per_s"]
    onnx_rates = {b: onnx_throughput(session, b) for b in args.batches}
    x1 = np.random.default_rng(1).random((1, 1, 28, 28), dtype=np.float32)
    onnx_p50, onnx_p99 = latencies_ms(lambda: session.session.run(None, {session.input_name: x1}))
    onnx_recognizer = Recognizer.load(onnx_file)
    onnx_api_p50, _ = latencies_ms(lambda: onnx_recognizer.predict(digit))
    onnx_cli_seconds = cli_predict_seconds("--model", str(onnx_file))
    torch_p50 = results[f"shipped ({SHIPPED_ARCH})"]["latency_ms_p50"]
    runtime_rows = [
        ["PyTorch", *(f"{torch_rates[b]:,.0f}" for b in args.batches), f"{torch_p50:.2f}", f"{api_p50:.2f}",
         f"{cli_seconds:.2f}"],
        ["onnxruntime", *(f"{onnx_rates[b]:,.0f} ({onnx_rates[b] / torch_rates[b]:.2f}×)" for b in args.batches),
         f"{onnx_p50:.2f}", f"{onnx_api_p50:.2f}", f"{onnx_cli_seconds:.2f}"],
    ]
    print(runtime_rows[-1], flush=True)
    import onnxruntime

    info = machine()
    markdown = "\n".join([
        markdown_table(["model", "MFLOPs / image", "images/s at batch " + " / ".join(map(str, args.batches)),
                        "1-image latency p50 / p99 (ms)", "of compute-bound limit"], rows), "",
        f"Peak fp32 matmul measured in the same run: {peak / 1e9:.0f} GFLOP/s. "
        f"`Recognizer.predict` on one 28×28 array (preprocessing included): "
        f"p50 {api_p50:.2f} ms, p99 {api_p99:.2f} ms. "
        f"`digitscan predict` on one image, wall time with Python start-up: {cli_seconds:.2f} s (median of 5).", "",
        markdown_table(["shipped model on", *(f"images/s at batch {b}" for b in args.batches),
                        "1-image model latency p50 (ms)", "`Recognizer.predict` p50 (ms)",
                        "`digitscan predict` one image (s)"], runtime_rows), "",
        f"onnxruntime {onnxruntime.__version__}, {torch.get_num_threads()} intra-op threads like PyTorch; "
        f"(×) = onnxruntime ÷ PyTorch at the same batch size, measured in the same run. The last column runs "
        f"`--model shipped.onnx`, which never imports PyTorch.",
        machine_line(info),
        "Command: `.venv/bin/python benchmarks/inference_speed.py`",
    ])
    write_results("inference_speed", {"machine": info, "peak_flops": peak, "models": results,
                                      "recognizer_latency_ms": [api_p50, api_p99], "cli_predict_s": cli_seconds,
                                      "onnxruntime": {"version": onnxruntime.__version__, "images_per_s": onnx_rates,
                                                      "latency_ms_p50": onnx_p50, "latency_ms_p99": onnx_p99,
                                                      "recognizer_latency_ms_p50": onnx_api_p50,
                                                      "cli_predict_s": onnx_cli_seconds}},
                  markdown)


if __name__ == "__main__":
    main()
