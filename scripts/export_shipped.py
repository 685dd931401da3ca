"""Export the shipped safetensors to the ONNX files digitscan runs by default, with their sha256 records.

Run after retraining any shipped model: `.venv/bin/python scripts/export_shipped.py` (about a minute; needs
PyTorch). Writes src/digitscan/weights/{shipped,ensemble,reader}.onnx and NAME.onnx.sha256 beside each; every
export is checked with onnx.checker and against PyTorch on fixed inputs first. tests/test_shipped_onnx.py fails
until the committed ONNX files match the safetensors they were exported from.
"""

from __future__ import annotations

from digitscan.models.export import export_shipped


def main() -> None:
    for result in export_shipped().values():
        print(f"{result.path}  {len(result.model):,} bytes  max |p_onnx - p_torch| {result.max_prob_diff:.1e}")


if __name__ == "__main__":
    main()
