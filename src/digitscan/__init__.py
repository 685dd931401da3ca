"""digitscan: handwritten digit recognition for photos, scans and drawings.

`from digitscan import Recognizer; Recognizer.load().predict("photo.jpg")`.
"""

from __future__ import annotations

__all__ = ["Recognizer", "Prediction", "ReadResult", "DigitBox"]


def __getattr__(name: str):
    # Lazy: `import digitscan` (and the CLI's start-up) must not pay for importing torch.
    if name in __all__:
        from digitscan import recognize

        return getattr(recognize, name)
    raise AttributeError(f"module 'digitscan' has no attribute {name!r}")
