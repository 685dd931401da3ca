"""Every exception digitscan raises on purpose, with the HTTP status the server answers it with.

Each message is one line meant for the user; `one_line(exc)` makes any exception's text one line. Catch
ImageError for "this input is bad" (the other inputs are still processed), CheckpointError for a bad model file,
DatasetError for a bad dataset file or folder, TemplateError for a bad form template, FieldFormatError for a reading
that is not the amount or date asked for.
"""

from __future__ import annotations


class DigitscanError(ValueError):
    """Base of digitscan's own errors. `http_status`: what the server answers; `reason`: its metrics label."""

    http_status = 500
    reason = "error"


class ImageError(DigitscanError):
    """The input cannot be turned into a digit image; the message is one line meant for the user."""

    http_status = 422
    reason = "unreadable"


class UnsupportedImageError(ImageError):
    """Not an image at all, or a format outside ALLOWED_FORMATS (HTTP 415)."""

    http_status = 415
    reason = "unsupported"


class ImageTooLargeError(ImageError):
    """More pixels or bytes than the limits allow (HTTP 413)."""

    http_status = 413
    reason = "too_large"


class UnreadableImageError(ImageError):
    """Empty, truncated, corrupt or otherwise undecodable input (HTTP 422)."""


class ImageTooComplexError(ImageError):
    """Reading the image took longer than its time limit: thousands of strokes, not a number (HTTP 422)."""


class ImageTooCostlyError(ImageError):
    """An encoding that would cost far more CPU to decode than any real picture, such as a JPEG with thousands of
    scans: refused from its structure, before any pixel is decoded (HTTP 422)."""

    reason = "too_costly"


class NoImagesError(ImageError):
    """A folder named on the command line holds no image file (nothing to do is an error, not silence)."""


class CheckpointError(DigitscanError):
    """A model file that is missing, malformed, tampered with or not a digitscan model (the operator's, not the
    client's: the server refuses to start with one, HTTP 500 if it ever reached a request)."""


class DatasetError(DigitscanError):
    """A dataset file or folder is missing, malformed or not the expected one; the message names the path."""


class ResultsFileError(DigitscanError):
    """A batch job's --out file that --resume cannot continue (not a results CSV of these columns, or damaged), or
    that another job is writing; the file is left exactly as it was."""


class ModelOutputError(DigitscanError):
    """The model produced NaN or infinite scores, which no result may carry (JSON cannot): a broken model file, the
    server's trouble rather than the client's (HTTP 500)."""


class ExportError(DigitscanError):
    """The ONNX export failed a check (graph checker, parity with PyTorch); nothing was written."""


class FieldFormatError(DigitscanError):
    """A reading that does not parse as the format asked for: an amount with inconsistent digit groups, a date that
    is not on the calendar; the message says which and why (one line)."""

    http_status = 422
    reason = "bad_format"


class TemplateError(DigitscanError):
    """A form template (FORM.json) that cannot be used: missing, too large, not JSON, or a key, type, box, kind,
    pattern or checksum that is wrong; the message names the file, the field and the problem (one line)."""


class Saturated(Exception):
    """Every worker is busy and the waiting line is full: the caller should answer 503 with Retry-After."""

    http_status = 503
    reason = "saturated"


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (newlines and runs of spaces squeezed); its type's name if empty."""
    return " ".join(str(exc).split()) or type(exc).__name__
