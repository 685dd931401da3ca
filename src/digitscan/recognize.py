"""The Python API: a Recognizer holds one model and turns images into predictions.

`Recognizer.load().predict("photo.jpg")` -> Prediction(digit=7, confidence=0.99, is_digit=True, ...).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitscan.constants import (
    DIGIT_CLASSES,
    IMAGE_SIZE,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    PAGE_TIME_LIMIT_S,
    READ_METHODS,
    READ_TIME_LIMIT_S,
)
from digitscan.errors import CheckpointError
from digitscan.image.decode import decode_image
from digitscan.image.prepare import preprocess
from digitscan.models.backends import softmax
from digitscan.reading.layout import DigitBox, Symbol, check_time
from digitscan.reading.segments import segment_number
from digitscan.reading.text import Alternative, assemble, merge_readers

if TYPE_CHECKING:  # pages and templates are imported where they are read: one digit does not pay for the form code
    from digitscan.fields.template import FieldResult, Template
    from digitscan.reading.page import PageField


@dataclass
class Prediction:
    digit: int | None  # None exactly when is_digit is False
    confidence: float  # calibrated probability of the top class, also when rejected
    is_digit: bool  # accepted, and the class is a digit 0-9 (never for a model of other classes: clothes, letters)
    probabilities: list[float]
    label: str | None = None  # the accepted class's name, digit or not; None when rejected

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["label"] is None or data["label"] == str(data["digit"]):
            data.pop("label")
        return data


@dataclass
class ReadResult:
    text: str  # digits 0-9 only, left to right; "" when no digit is found
    confidence: float  # product of the symbols' confidences: the chance that the whole reading is right; 0.0 for ""
    digits: list[DigitBox]
    raw: str = ""  # as written, first digit to last: digits, separators . , - / : and group spaces
    symbols: list[Symbol] = field(default_factory=list)  # those of raw, each with its box
    marks: list[Symbol] = field(default_factory=list)  # read around the number and left out of raw (=, *, $, --)
    alternatives: list[Alternative] = field(default_factory=list)  # readings one symbol away, best first

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("symbols", "marks"):
            data[key] = [{"symbol": s["symbol"], "confidence": s["confidence"], "box": s["box"]} for s in data[key]]
        return data


@dataclass
class PageResult:
    fields: list[PageField]  # the handwritten numbers on a form page, top to bottom and left to right

    def to_dict(self) -> dict:
        return {"fields": [f.to_dict() for f in self.fields]}


class Recognizer:
    """One loaded model plus the preprocessing and rejection rule recorded with it.

    The model is a backend: any callable from prepared inputs (N, 28, 28) to logits (N, classes) as numpy, PyTorch
    or onnxruntime (digitscan.models.backends). Everything after the logits (calibration, rejection, reading) is shared.
    """

    def __init__(self, backend: Callable[[np.ndarray], np.ndarray], meta: dict, path: str | os.PathLike,
                 preprocess_mode: str | None = None, reader: str | os.PathLike | None = None,
                 read_method: str = "segments", reader_backend: str | None = None):
        self.backend = backend
        self.reader_path = reader  # the line reader's file (None: the shipped one), loaded on first read
        self.reader_backend = reader_backend  # "torch" or None (onnxruntime for the shipped reader and .onnx files)
        self._line_reader = None
        self.read_method = read_method  # what read() does unless told otherwise
        self.meta = meta
        self.path = Path(path)
        self.classes: list[str] = meta["classes"]
        self.preprocess_mode = preprocess_mode or meta.get("preprocess", "robust")
        self.temperature = float(meta.get("temperature", 1.0))
        self.reject_threshold = float(meta.get("reject_threshold", 0.0))
        # Set: an image is a digit when its top logit reaches this (the rule of --realworld models since pools v9);
        # None: when the calibrated top probability reaches reject_threshold (ensembles, older models).
        logit_threshold = meta.get("reject_logit_threshold")
        self.reject_logit_threshold = None if logit_threshold is None else float(logit_threshold)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, preprocess: str | None = None,
             ensemble: bool = False, backend: str | None = None, threads: int | None = None,
             reader: str | os.PathLike | None = None) -> Recognizer:
        """Load a model file, or the shipped model when path is None; ensemble=True: the shipped ensemble.
        reader: the line reader `read` uses (None: the shipped one; see digitscan.reading.line_reader). `read` uses
        the line reader by default, except when path or ensemble chose a digit model: that model is then what reads
        numbers (method "segments").

        backend: "onnx" (onnxruntime, no PyTorch) or "torch". None: "onnx" for the shipped models (their ONNX
        exports ship beside the safetensors, scripts/export_shipped.py) and for a .onnx file, "torch" for a
        checkpoint (.safetensors). backend="onnx" with a checkpoint exports it to ONNX in memory first (a few
        seconds, parity-checked, needs PyTorch); backend="torch" runs the shipped safetensors and line reader on
        PyTorch. threads: the model's intra-op threads (None: the runtime's default; PyTorch's process-wide
        setting is changed only during this model's calls).
        """
        recognizer = cls._load_unchecked(path, preprocess, ensemble, backend, threads, reader)
        recognizer.refuse_non_finite_scores()
        return recognizer

    @classmethod
    def _load_unchecked(cls, path, preprocess, ensemble, backend, threads, reader) -> Recognizer:
        from digitscan.models.backends import BACKENDS, OnnxBackend, is_onnx_path, load_onnx_ensemble
        from digitscan.models.shipped import SHIPPED_ONNX, onnx_export_of, shipped_ensemble_paths, weights_dir

        read_method = "segments" if path is not None or ensemble else "sequence"
        backend = backend or ("torch" if path is not None and not is_onnx_path(path) else "onnx")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        if is_onnx_path(path) and (backend != "onnx" or ensemble):
            raise ValueError(f"{path}: an ONNX model runs on the onnx backend, alone (no torch, no ensemble)")
        if path is None and backend == "onnx" and ensemble:  # the members' shipped exports: no PyTorch at all
            members = [onnx_export_of(p) for p in shipped_ensemble_paths()]
            session, meta = load_onnx_ensemble(members, threads)
            return cls(session, meta, members[0], preprocess, reader, read_method)
        if path is None and backend == "onnx":  # the shipped export: no PyTorch at all
            path = weights_dir() / SHIPPED_ONNX
        reader_backend = "torch" if backend == "torch" else None
        if is_onnx_path(path):
            session = OnnxBackend(path, threads)
            return cls(session, session.metadata(str(path)), path, preprocess, reader, read_method, reader_backend)

        from digitscan.models.backends import TorchBackend
        from digitscan.models.checkpoint import load_checkpoint, load_ensemble

        checkpoint = load_ensemble() if ensemble else load_checkpoint(path)
        if backend == "torch":
            return cls(TorchBackend(checkpoint.model, threads), checkpoint.meta, checkpoint.path, preprocess, reader,
                       read_method, reader_backend)
        from digitscan.models.export import export_onnx

        session = OnnxBackend(export_onnx(checkpoint).model, threads)
        return cls(session, session.metadata(str(checkpoint.path)), checkpoint.path, preprocess, reader, read_method)

    def refuse_non_finite_scores(self) -> None:
        """Run the model once on fixed inputs (blank, full ink, a drawn ring like a 0) and refuse it with one
        CheckpointError line if any logit, or any probability after the temperature, is NaN or infinite.

        Finite weights can still overflow (a weight of 3e38 times a few pixels is infinity, and infinity minus
        infinity is NaN two layers later), and a finite temperature can be tiny enough to turn finite logits into
        infinities: such a model would answer NaN to every user, so it is stopped here, once, at load.
        """
        rows, cols = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
        radius = np.hypot(rows - IMAGE_SIZE / 2, cols - IMAGE_SIZE / 2)
        ring = ((radius >= 5) & (radius <= 8)).astype(np.float32)
        probes = np.stack([np.zeros_like(ring), np.ones_like(ring), ring])  # (3, 28, 28)
        logits = np.asarray(self.backend(probes), np.float64)
        with np.errstate(all="ignore"):  # overflow is what is being looked for, not a warning to print
            probs = softmax(logits / self.temperature)
        if not (np.isfinite(logits).all() and np.isfinite(probs).all()):
            raise CheckpointError(f"{self.path}: the model's scores are NaN or infinite on fixed test inputs "
                                  f"(weights that overflow, or a temperature too close to 0); the file is broken")

    def prepare(self, image, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
        """Any supported image (path, bytes, PIL image, array) -> the (28, 28) input the model sees; the limits are
        decode_image's."""
        return preprocess(image, self.preprocess_mode, max_pixels=max_pixels, max_bytes=max_bytes)

    def predict(self, image) -> Prediction:
        return self.predict_inputs(self.prepare(image)[None])[0]

    def predict_inputs(self, inputs: np.ndarray) -> list[Prediction]:
        """Predictions for a stack of already prepared (N, 28, 28) inputs in [0, 1]."""
        if len(inputs) == 0:
            return []
        logits = np.asarray(self.backend(inputs), np.float64)  # (N, classes)
        probs = softmax(logits / self.temperature)
        has_ink = np.asarray(inputs).reshape(len(inputs), -1).max(axis=1) > 0
        return [self.decide(p, float(top), bool(ink)) for p, top, ink in zip(probs, logits.max(axis=1), has_ink)]

    def decide(self, probs: np.ndarray, top_logit: float, has_ink: bool) -> Prediction:
        """The answer for one input from its calibrated probabilities and its top logit (the not-a-digit score)."""
        if not has_ink:
            # No ink means no evidence for any class: report that, not the network's guess for an all-black input.
            probs = np.full(len(self.classes), 1.0 / len(self.classes))
        top = int(probs.argmax())
        confidence = float(probs[top])
        if self.reject_logit_threshold is None:
            accepted = has_ink and confidence >= self.reject_threshold
        else:
            accepted = has_ink and top_logit >= self.reject_logit_threshold
        label = self.classes[top]
        is_digit = accepted and label in DIGIT_CLASSES
        return Prediction(digit=int(label) if is_digit else None, confidence=confidence, is_digit=is_digit,
                          probabilities=[float(p) for p in probs], label=label if accepted else None)

    def read(self, image, *, method: str | None = None, time_limit_s: float = READ_TIME_LIMIT_S,
             at_least: int | None = None) -> ReadResult:
        """A whole number written on one line (path, bytes, PIL image or array): digits left to right, with boxes.

        method None: this recognizer's read_method (see load). "sequence": the line reader reads the whole line at
        once (digitscan.reading.line_reader; onnxruntime unless loaded with backend="torch"). "segments": the
        line is cut into digits and each goes through this recognizer's model (digitscan.reading.segments); a piece
        the model rejects is dropped when it is also small next to the other digits (a speck, a dash), and a rejected
        digit-sized piece is kept as its most likely digit with its low confidence, so the text keeps its length.
        "both": the two, each digit's class from their averaged probabilities where they find as many digits
        (reading.text.merge_readers; the separators are the line reader's). Pages read comb rows this way.
        at_least: how many digits the image is known to hold at least (a comb row's cells holding ink); with
        "both", when the line reader finds fewer and the cutting reader exactly this many, the cutting reader's
        reading is the one returned (else the line reader's, as without it).
        docs/reading-numbers.md compares the two.
        Both use the robust ink finder, whatever this recognizer's preprocess mode. Reading a page of clutter that
        would take longer than time_limit_s raises ImageTooComplexError (an ImageError).
        """
        method = method or self.read_method
        if method not in READ_METHODS:
            raise ValueError(f"unknown reading method {method!r}; choose one of: {', '.join(READ_METHODS)}")
        gray = decode_image(image)
        deadline = time.monotonic() + time_limit_s
        if method in ("sequence", "both"):
            from digitscan.reading.line_reader import read_line

            symbols = read_line(self.line_reader, gray, time_limit_s=time_limit_s)
        if method in ("segments", "both"):
            cut = [Symbol(str(d.digit), d.confidence, d.box) for d in segment_number(
                gray, self.digit_probabilities, time_limit_s=max(deadline - time.monotonic(), 1e-3))]
            symbols = merge_readers(symbols, cut, at_least) if method == "both" else cut
        reading = assemble(symbols)
        digits = [DigitBox(int(s.symbol), s.confidence, s.box) for s in reading.symbols if s.symbol.isdigit()]
        return ReadResult(text=reading.text, confidence=reading.confidence, digits=digits, raw=reading.raw,
                          symbols=reading.symbols, marks=reading.marks, alternatives=reading.alternatives)

    def read_template(self, image, template: Template, *, method: str | None = None,
                      time_limit_s: float = READ_TIME_LIMIT_S,
                      page_time_limit_s: float | None = None) -> dict[str, FieldResult]:
        """Every field of a form (a Template from digitscan.fields.load_template) read on a page image: {name:
        FieldResult}. Each field's box is read by `read` (method, default "both": the line reader and this
        recognizer's digit model; time_limit_s per field) once its printed form lines (comb boxes, underlines,
        frames) are painted out, as pages read their fields; docs/templates.md. page_time_limit_s bounds the whole
        page too (a server's request): past it ImageTooComplexError."""
        from digitscan.fields.template import read_template, without_small_print
        from digitscan.reading.form_lines import remove_form_lines
        from digitscan.reading.text import review_confidence

        deadline = None if page_time_limit_s is None else time.monotonic() + page_time_limit_s
        page = decode_image(image)
        method = method or "both"

        def read_field(crop: np.ndarray) -> ReadResult:
            limit = time_limit_s
            if deadline is not None:
                check_time(deadline, page_time_limit_s)
                limit = min(limit, max(deadline - time.monotonic(), 1e-3))
            cleaned = without_small_print(remove_form_lines(crop, field=True, page_side=max(page.shape)))
            return self.read(cleaned, method=method, time_limit_s=limit)

        return read_template(page, template, read_field, review_confidence=review_confidence(method))

    def read_page(self, image, *, method: str | None = None,
                  time_limit_s: float = PAGE_TIME_LIMIT_S) -> PageResult:
        """Every handwritten number on a form page (path, bytes, PIL image or array): comb boxes, underlined and
        boxed fields and free-standing numbers, printed text left out; each field's ink is read by `read` with
        `method`, default "both": the line reader and this recognizer's digit model (comb rows with their inked
        cells as `at_least`; digitscan.reading.page). A page that would take longer than time_limit_s raises
        ImageTooComplexError."""
        from digitscan.fields.formats import shape_problem
        from digitscan.reading.page import read_page
        from digitscan.reading.text import review_confidence

        gray = decode_image(image)
        method = method or "both"
        return PageResult(read_page(gray, lambda crop: self.read(crop, method=method),
                                    read_comb=lambda crop, cells: self.read(crop, method=method, at_least=cells),
                                    shape_problem=shape_problem, review_confidence=review_confidence(method),
                                    time_limit_s=time_limit_s))

    def warm_up(self, read: str | None = None) -> None:
        """Load and run now what a first request would wait for, so that a model that cannot serve fails here, once,
        not on every input: one inference on a blank input, and the line reader when reading uses it.

        read: the reading method about to be used ("sequence", "segments" or "both"), which is then checked too (a
        digit model for cutting must know the digits 0-9); None: this recognizer's own method, where a model that
        cannot read numbers is no error (it may only be meant to predict).
        """
        blank = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        self.predict_inputs(blank)
        method = read or self.read_method
        if method in ("sequence", "both"):
            _ = self.line_reader
        if read in ("segments", "both"):
            self.digit_probabilities(blank)

    @property
    def line_reader(self):
        """The line reader's network, a strip -> log-probabilities callable (loaded on first use)."""
        if self._line_reader is None:
            from digitscan.reading.line_reader import reader_backend

            self._line_reader = reader_backend(self.reader_path, self.reader_backend)
        return self._line_reader

    def digit_probabilities(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 28, 28) prepared inputs -> (probabilities (N, 10) of the digits 0-9, accepted as a digit (N,))."""
        columns = [self.classes.index(str(d)) if str(d) in self.classes else -1 for d in range(10)]
        if min(columns) < 0:
            raise ValueError(f"model {self.name} does not recognize all the digits 0-9: cannot read numbers")
        predictions = self.predict_inputs(inputs)
        probs = np.array([p.probabilities for p in predictions], np.float64).reshape(len(inputs), -1)
        return probs[:, columns], np.array([p.is_digit for p in predictions], bool)

    @property
    def name(self) -> str:
        return self.path.name


