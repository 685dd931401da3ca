"""The one JSON encoder of what digitscan prints (`--json`) and answers (the HTTP API): strict JSON, never NaN.

Python's json writes float("nan") as a bare NaN and infinity as Infinity, which JSON does not have: strict readers
(JavaScript's JSON.parse, jq, most languages' parsers) reject the whole line. A result holding one comes from a
broken model, so it is refused as an error rather than mapped to null: a null confidence would look like a valid
answer with a missing field, while an error says what happened and the caller's other inputs go on.
"""

from __future__ import annotations

import json

from digitscan.errors import ModelOutputError


def strict_json(record) -> str:
    """`record` as one line of strict JSON; ModelOutputError when it holds NaN or an infinity."""
    try:
        return json.dumps(record, allow_nan=False)
    except ValueError:  # json's "Out of range float values are not JSON compliant"
        raise ModelOutputError("the result holds NaN or infinite numbers, which JSON cannot carry; the model "
                               "file is broken") from None
