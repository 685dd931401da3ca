"""Where the shipped models live and how their files are checked: names, paths and recorded sha256 digests.

Torch-free: the default inference path (onnxruntime on the ONNX files exported from the shipped safetensors) finds
its files here without importing PyTorch. Each file NAME has its digest recorded beside it when it was built
(NAME.sha256 for a .safetensors checkpoint, NAME.onnx.sha256 for an ONNX export); loading a shipped file checks it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from digitscan.errors import CheckpointError

SHIPPED_NAME = "shipped.safetensors"
ENSEMBLE_GLOB = "shipped*.safetensors"  # the shipped model plus the extra seeds of the optional ensemble
READER_NAME = "reader.safetensors"  # the line reader (digitscan.reading.line_reader)
# ONNX exports of the above (scripts/export_shipped.py), what predict, read, serve and batch jobs run by default.
# Each shipped checkpoint NAME.safetensors has its export in NAME.onnx (onnx_export_of); the ensemble runs its
# members' files (models.backends.OnnxEnsembleBackend), so no file holds a second copy of any weights.
SHIPPED_ONNX = "shipped.onnx"
READER_ONNX = "reader.onnx"


def weights_dir() -> Path:
    # Beside the package's modules (package data); a path, not importlib.resources: onnxruntime and safetensors
    # open files by name, and a prediction should not pay for importing importlib.resources' machinery.
    return Path(__file__).resolve().parents[1] / "weights"


def shipped_path() -> Path:
    return weights_dir() / SHIPPED_NAME


def shipped_ensemble_paths() -> list[Path]:
    """The shipped model first, then the other members of the shipped ensemble."""
    return [shipped_path()] + sorted(p for p in weights_dir().glob(ENSEMBLE_GLOB) if p.name != SHIPPED_NAME)


def onnx_export_of(checkpoint: Path) -> Path:
    """Where a shipped checkpoint's ONNX export lies: beside it, NAME.onnx for NAME.safetensors."""
    return Path(checkpoint).with_suffix(".onnx")


def is_shipped(path: Path) -> bool:
    """A file in the package's weights folder, whose digest must match its record."""
    return Path(path).resolve().parent == weights_dir().resolve()


def digest_record(path: Path) -> Path:
    """The file holding `path`'s recorded sha256."""
    return path.with_suffix(".sha256") if path.suffix == ".safetensors" else path.with_name(path.name + ".sha256")


def recorded_sha256(path: Path) -> str:
    """The digest recorded beside shipped weights when they were built."""
    record = digest_record(path)
    try:
        return record.read_text().split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        raise CheckpointError(f"{path}: no readable sha256 recorded in {record.name}; reinstall digitscan") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_recorded(path: Path, data: bytes | None = None) -> None:
    """Refuse a shipped file whose bytes (`data` when already read, else the file's) differ from its record."""
    actual = sha256_bytes(data) if data is not None else sha256_file(path)
    if actual != recorded_sha256(path):
        raise CheckpointError(f"{path}: shipped weights do not match their recorded sha256; reinstall digitscan")


def write_record(path: Path) -> Path:
    """Record `path`'s digest beside it, in sha256sum's format (`sha256sum -c` checks it)."""
    record = digest_record(path)
    record.write_text(f"{sha256_file(path)}  {path.name}\n")
    return record
