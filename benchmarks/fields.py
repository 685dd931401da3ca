"""Reading fields: cheque-style amounts, dates and IDs written with separators and marks, photographed on printed
cheque backgrounds, made from MNIST *test* digits (`--dev`: the validation digits of the training split, for
choosing settings); and form pages with 5-15 fields (`--pages N`, benchmarks/fields_pages.py).

Per kind: the share of fields whose `text` (digits only), `raw` (as written) and parsed `value` are exactly right,
and how `needs_review` splits the wrong fields (flagged: the share a person would check) from the right ones;
and the share of fields whose digit images the digit model reads right one by one, as the 28x28 images they were
drawn from (common.read_right_alone), with the text's exact share among those: what the reader could read at most
with this model, and what the photo and the line cost.

Run: `.venv/bin/python benchmarks/fields.py [--dev] [--count 400]` (about 2 minutes per 1,000 fields on 2 CPU cores);
writes benchmarks/results/fields[-dev].{json,md}. `--sweep` also prints the review rule's outcome over a grid of
thresholds (use it with --dev only: the thresholds are chosen there). `--second-reader CKPT` also reads every
field with another line reader and reports it alone, the more confident of the two readings, the two readers'
per-frame posteriors averaged, and the readings differing as a review flag. `--method segments|both` and
`--ensemble` read with the cutting reader or both readers, the shipped model or ensemble cutting (results named
fields[-dev]-METHOD[-ensemble]). Example pictures go to runs/fields/.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, markdown_table, read_right_alone, write_results  # noqa: E402
from digitscan.constants import READ_METHODS  # noqa: E402
from digitscan.data.mnist import load_mnist, train_val_split  # noqa: E402
from digitscan.fields.formats import VALUE_KINDS, FieldSpec  # noqa: E402
from digitscan.reading.text import review_reason  # noqa: E402
from digitscan.recognize import Recognizer  # noqa: E402
from digitscan.synthetic.fields import FIELD_KINDS, Field, field_tokens, render_field  # noqa: E402
from digitscan.synthetic.photos import PATTERNS, Condition, photograph  # noqa: E402

# A cheque's courtesy amount box or a form's date field, photographed or scanned: printed backgrounds on most,
# blue or black ballpoint, a little rotation, light and JPEG. (Training photographs fields with its own,
# broader condition, training.line_reader.FIELD_CONDITION.)
CHEQUE = Condition("a field on a cheque or form: printed background, ballpoint, photographed or scanned",
                   inks=("black", "blue", "blue"), papers=tuple(PATTERNS) * 2 + ("white", "tinted"),
                   height_fraction=(0.3, 0.8), image_height=(90, 260), rotation_deg=2.0, lighting=0.3,
                   noise=(0.0, 8.0), blur=(0.0, 0.4), jpeg_quality=(60, 95), encodings=("png", "jpeg"),
                   texture=0.03, each=0.7)
JPEG_START = b"\xff\xd8"
MARKS = {"amount": 0.6, "date": 0.4, "id": 0.4}  # chance of a mark before and after (field_tokens' `marks`)


def digits_for(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test digits, or (dev) the validation part of the training split that training never sees."""
    if split == "test":
        return load_mnist("test")
    images, labels = load_mnist("train")
    _, val = train_val_split(len(images), 0.1, 0)
    return images[val], labels[val]


def samples(images: np.ndarray, labels: np.ndarray, kind: str, count: int,
            seed: int) -> list[tuple[bytes, Field, list[int]]]:
    """`count` photographed fields of one kind: [(file bytes, the field, the indices of its digit images)],
    deterministic."""
    rng = np.random.default_rng([seed, FIELD_KINDS.index(kind)])
    out = []
    for _ in range(count):
        field = field_tokens(kind, rng, marks=MARKS[kind])
        sources: list[int] = []
        coverage = render_field(field, images, labels, rng, digit_height=int(rng.integers(28, 64)), sources=sources)
        out.append((photograph(coverage, CHEQUE, rng), field, sources))
    return out


def read_all(recognizer: Recognizer, data: list[tuple[bytes, Field, list[int]]], kind: str,
             method: str | None = None) -> list[dict]:
    """Each field read (with `method`, None: the recognizer's own), and its value parsed as `read --format
    amount|date` does (FieldSpec.parse: an amount or a date that does not parse takes the value of its best
    alternative that does, and needs review)."""
    spec = FieldSpec(kind=kind) if kind in VALUE_KINDS else None
    rows = []
    for blob, field, _ in data:
        result = recognizer.read(blob, method=method)
        parses, value, note = spec.parse(result) if spec else (True, None, None)
        rows.append({"truth_raw": field.raw, "truth_value": field.value, "text": result.text, "raw": result.raw,
                     "value": value, "confidence": result.confidence,
                     "alternative": result.alternatives[0].confidence if result.alternatives else 0.0,
                     "text_ok": result.text == field.text, "raw_ok": result.raw == field.raw,
                     "value_ok": spec is None or value == field.value, "parses": parses,
                     "corrected": bool(parses and note)})
    return rows


class AveragedReader:
    """Two line readers as one: their per-frame posteriors averaged (the same strip, the same frame rate)."""

    def __init__(self, first, second):
        if first.classes != second.classes or first.small_marks != second.small_marks:
            raise ValueError("the two line readers must have the same classes and strips to be averaged")
        self.first, self.second = first, second
        self.classes, self.small_marks = first.classes, first.small_marks

    def __call__(self, strip: np.ndarray) -> np.ndarray:
        mean = (np.exp(self.first(strip)) + np.exp(self.second(strip))) / 2
        return np.log(np.maximum(mean, 1e-12))


def flagged(row: dict, confidence: float | None = None, margin: float | None = None) -> bool:
    """needs_review as `read --format` sets it: a value that does not parse or came from an alternative, or the
    review rule (at its shipped thresholds unless given)."""
    options = {**({} if confidence is None else {"min_confidence": confidence}),
               **({} if margin is None else {"margin": margin})}
    return not row["parses"] or row["corrected"] or review_reason(row["confidence"], row["alternative"],
                                                                  **options) is not None


def is_right(row: dict) -> bool:
    return row["raw_ok"] and row["value_ok"]


def second_reader(rows: list[dict], second: list[dict], averaged: list[dict]) -> dict:
    """--second-reader: the other reader alone, the more confident reading, the averaged posteriors, and how the
    readings differing splits the first reader's wrong and right fields, alone and with the review rule."""
    right = np.array([is_right(r) for r in rows])
    differ = np.array([a["raw"] != b["raw"] for a, b in zip(rows, second)])
    rule = np.array([flagged(r) for r in rows])
    stricter = np.array([flagged(r, 0.95) for r in rows])
    surer = [a if a["confidence"] >= b["confidence"] else b for a, b in zip(rows, second)]

    def split(flags: np.ndarray) -> list[float]:
        return [float(flags[~right].mean()) if (~right).any() else 0.0, float(flags[right].mean())]

    return {"right": float(right.mean()), "second_right": float(np.mean([is_right(r) for r in second])),
            "more_confident_right": float(np.mean([is_right(r) for r in surer])),
            "averaged_right": float(np.mean([is_right(r) for r in averaged])),
            "differ": split(differ), "rule": split(rule), "rule_or_differ": split(rule | differ),
            "rule_at_0.95": split(stricter), "wrong": int((~right).sum())}


def review_split(rows: list[dict], kind: str, confidence: float | None = None, margin: float | None = None) -> dict:
    """needs_review on these readings: the share of wrong fields it flags and of right fields it flags. A field
    is right when its raw (and, for amounts and dates, its value) is."""
    flagged_wrong = flagged_right = wrong = right = 0
    for row in rows:
        flag, ok = flagged(row, confidence, margin), is_right(row)
        wrong, right = wrong + (not ok), right + ok
        flagged_wrong += flag and not ok
        flagged_right += flag and ok
    return {"wrong": wrong, "wrong_flagged": flagged_wrong / max(wrong, 1),
            "right_flagged": flagged_right / max(right, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", action="store_true", help="validation digits (for choosing settings)")
    parser.add_argument("--count", type=int, default=400, help="fields per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reader", help="a line reader other than the shipped one")
    parser.add_argument("--method", choices=READ_METHODS, help="the reading method (default: the line reader)")
    parser.add_argument("--ensemble", action="store_true",
                        help="the shipped ensemble as the digit model (--method segments or both)")
    parser.add_argument("--sweep", action="store_true", help="the review rule over a grid of thresholds")
    parser.add_argument("--second-reader", metavar="CKPT",
                        help="another line reader (train-reader checkpoint) read beside the first: see above")
    parser.add_argument("--examples", type=int, default=6, help="example photos per kind written to runs/fields/")
    args = parser.parse_args()
    split = "dev" if args.dev else "test"
    images, labels = digits_for(split)
    recognizer = Recognizer.load(reader=args.reader, ensemble=args.ensemble)
    method = args.method or "sequence"
    if args.second_reader:
        other = Recognizer.load(reader=args.second_reader)
        both = Recognizer.load(reader=args.reader)
        both._line_reader = AveragedReader(recognizer.line_reader, other.line_reader)  # no public setter: a benchmark
    out_dir = Path("runs/fields")
    out_dir.mkdir(parents=True, exist_ok=True)

    results, table = {}, []
    all_rows = []
    for kind in FIELD_KINDS:
        data = samples(images, labels, kind, args.count, args.seed + (1000 if args.dev else 0))
        start = time.perf_counter()
        rows = read_all(recognizer, data, kind, method)
        seconds = (time.perf_counter() - start) / len(rows)
        for i, (blob, *_) in enumerate(data[: args.examples]):
            suffix = "jpg" if blob.startswith(JPEG_START) else "png"
            (out_dir / f"{split}-{kind}-{i}.{suffix}").write_bytes(blob)
        split_review = review_split(rows, kind)
        share = {key: float(np.mean([r[key] for r in rows])) for key in ("text_ok", "raw_ok", "value_ok")}
        alone = np.array(read_right_alone(recognizer, images, [(field.text, sources) for _, field, sources in data]))
        text_ok = np.array([r["text_ok"] for r in rows])
        share["digits_right_alone"] = float(alone.mean())
        share["text_ok_where_right_alone"] = float(text_ok[alone].mean()) if alone.any() else None
        results[kind] = {"count": len(rows), **share, **split_review, "ms_per_field": 1000 * seconds,
                         "misread": [{k: r[k] for k in ("truth_raw", "raw", "confidence")}
                                     for r in rows if not (r["raw_ok"] and r["value_ok"])][:40]}
        table.append([kind, len(rows), f"{share['text_ok']:.1%}", f"{share['raw_ok']:.1%}",
                      "-" if kind == "id" else f"{share['value_ok']:.1%}", split_review["wrong"],
                      f"{split_review['wrong_flagged']:.0%}", f"{split_review['right_flagged']:.1%}",
                      f"{share['digits_right_alone']:.1%}", f"{share['text_ok_where_right_alone']:.1%}",
                      f"{1000 * seconds:.1f}"])
        all_rows += [(kind, r) for r in rows]
        if args.second_reader:
            results[kind]["second_reader"] = second_reader(rows, read_all(other, data, kind),
                                                           read_all(both, data, kind))

    markdown = [f"## Fields ({split}: MNIST {'validation' if args.dev else 'test'} digits, {args.count} per kind, "
                f"seed {args.seed}; method {method}{', the shipped ensemble' if args.ensemble else ''})", "",
                markdown_table(["kind", "fields", "text exact", "raw exact", "value exact", "wrong",
                                "wrong flagged", "right flagged", "digits right alone",
                                "text exact where they are", "ms/field"], table), "", machine_line()]
    data = {"split": split, "count": args.count, "seed": args.seed, "method": method, "ensemble": args.ensemble,
            "kinds": results, "machine": machine(),
            "condition": dataclasses.asdict(CHEQUE)}
    if args.sweep:
        sweep = []
        for confidence in (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99):
            for margin in (0.1, 0.2, 0.3, 0.5, 1.0):
                by_kind = [review_split([r for k, r in all_rows if k == kind], kind, confidence, margin)
                           for kind in FIELD_KINDS]
                sweep.append([confidence, margin] + [f"{s['wrong_flagged']:.0%} / {s['right_flagged']:.1%}"
                                                     for s in by_kind])
        markdown += ["", "Review rule sweep (wrong flagged / right flagged):", "",
                     markdown_table(["min confidence", "margin", *FIELD_KINDS], sweep)]
        data["sweep"] = sweep
    if args.second_reader:
        compare = [[kind, f"{c['right']:.1%}", f"{c['second_right']:.1%}", f"{c['more_confident_right']:.1%}",
                    f"{c['averaged_right']:.1%}", c["wrong"],
                    *(f"{c[key][0]:.0%} / {c[key][1]:.1%}" for key in ("rule", "differ", "rule_or_differ",
                                                                       "rule_at_0.95"))]
                   for kind in FIELD_KINDS for c in [results[kind]["second_reader"]]]
        markdown += ["", f"Beside a second line reader ({args.second_reader}): fields with raw and value right, and "
                     "review flags (wrong flagged / right flagged):", "",
                     markdown_table(["kind", "reader", "second", "more confident", "averaged", "wrong", "rule",
                                     "readings differ", "rule or differ", "rule at 0.95"], compare)]
    variant = ("" if method == "sequence" else f"-{method}") + ("-ensemble" if args.ensemble else "")
    write_results(f"fields{'-dev' if args.dev else ''}{variant}", data, "\n".join(markdown))


if __name__ == "__main__":
    main()
