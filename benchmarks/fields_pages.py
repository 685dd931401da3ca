"""Reading form pages: `Recognizer.read_page` on generated forms (digitscan.synthetic.forms), per kind of field.

Pages hold 5-15 fields (comb rows, underlined blanks, boxes, free-standing numbers) filled with digit strings,
dates and amounts written with MNIST digits, beside printed labels that include digits ("Box 12", "Rev. 03/2023").
Reported: per kind and per content, the share of fields read exactly (`text`, the digits), found at all (a
returned box overlapping the true one by IoU >= 0.5); the share of printed labels returned
as (or inside) a field, which must be 0 (a label counts as inside a field when the field's box holds half of it
and the true field's box does not); fields returned where there is nothing to read; needs_review on right
and wrong fields; the printed-or-handwritten decision on every candidate (`find_fields`); and, to tell what the
page costs from what the model does, the share of fields whose digit images the model reads right one by one as
the 28x28 images they were drawn from (mark_model_alone) and the exact share among those. `--template` also reads
each page through a template (`Recognizer.read_template`) whose boxes are the ones a user would draw: each comb
row's and box's printed frame with TEMPLATE_PAD of its height around it, each underlined or free number's ink with
TEMPLATE_INK_PAD of its height; comb rows as kind "comb", the others "digits", no pattern. Fields are read as
`read_page` reads them by default (both readers, the shipped model cutting); `--method sequence|segments|both` and
`--ensemble` (the shipped ensemble cutting) compare other ways, their results named
fields_pages[_dev][_METHOD[_ensemble]][_seedN].

Run: `.venv/bin/python benchmarks/fields_pages.py --pages 200` (`--split test`: MNIST *test* digits and the
Liberation fonts, the report) or `--dev` (`--split dev`: the validation part of MNIST's training digits,
`train_val_split(60000, 0.1, 0)`, and the FreeFont fonts; every threshold of digitscan.reading.page and form_lines
was chosen on those, the rules developed on DejaVu pages). Writes benchmarks/results/fields_pages[_dev].{json,md},
and into --out (default runs/fields/, ignored by git) the same JSON and the first --examples pages with their boxes
drawn: truth in blue, fields read right in green, wrong in red, printed text returned in magenta. MNIST-derived
images are never committed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, markdown_table, read_right_alone, write_results  # noqa: E402
from digitscan.constants import READ_METHODS, REVIEW_MARGIN  # noqa: E402
from digitscan.data.mnist import load_mnist, train_val_split  # noqa: E402
from digitscan.fields.template import Template, template_from_dict  # noqa: E402
from digitscan.image.decode import decode_image  # noqa: E402
from digitscan.reading.page import find_fields  # noqa: E402
from digitscan.reading.text import review_confidence  # noqa: E402
from digitscan.recognize import Recognizer  # noqa: E402
from digitscan.synthetic.forms import CONTENTS, KINDS, draw_boxes, make_page, printed_fonts  # noqa: E402

MATCH_IOU = 0.5  # a returned field is the true field it overlaps this much (intersection over union)
# A printed label is returned when this share of its box lies inside a returned field's box, unless as much of it
# lies inside the true field's box too (a digit written up to the label above it).
LABEL_COVER = 0.5
REVIEW_THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99)  # needs_review thresholds reported beside the one in use
TEMPLATE_PAD = 0.15  # --template: a printed frame's box grows by this share of its height on every side,
TEMPLATE_INK_PAD = 0.4  # an underlined or free number's ink box by this share of the ink's height


def iou(a: list[int], b: list[int]) -> float:
    inter = _intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def _intersection(a: list[int], b: list[int]) -> int:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, width) * max(0, height)


def _covers(box: list[int], label: list[int]) -> bool:
    """Whether a box holds LABEL_COVER of a label's box."""
    return _intersection(box, label) >= LABEL_COVER * label[2] * label[3]


def match(returned: list, truth: list) -> dict[int, int]:
    """Returned index -> true index, one to one, greedily by IoU (at least MATCH_IOU)."""
    pairs = sorted(((iou(r.box, t.box), i, j) for i, r in enumerate(returned) for j, t in enumerate(truth)),
                   reverse=True)
    used_r, used_t, matched = set(), set(), {}
    for overlap, i, j in pairs:
        if overlap < MATCH_IOU:
            break
        if i not in used_r and j not in used_t:
            matched[i] = j
            used_r.add(i)
            used_t.add(j)
    return matched


def page_template(truth, size: tuple[int, int]) -> Template:
    """The template a user would draw for this page (see the module docstring): field "f{i}" is truth.fields[i]."""
    width, height = size
    fields = {}
    for i, true in enumerate(truth.fields):
        x, y, w, h = true.frame or true.box
        pad = round((TEMPLATE_PAD if true.frame else TEMPLATE_INK_PAD) * h)
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(width, x + w + pad), min(height, y + h + pad)
        fields[f"f{i}"] = {"box": [x0, y0, x1 - x0, y1 - y0], "units": "px",
                           "kind": "comb" if true.kind == "comb" else "digits"}
    return template_from_dict({"name": "generated page", "size": [width, height], "fields": fields})


def score_page(fields: list, candidates: list, truth, read_template: dict | None = None) -> dict:
    """One page's outcome, as plain data: per true field, per returned field, per label, per candidate;
    read_template: the page read through page_template ({"f{i}": FieldResult}), when it was."""
    matched = match(fields, truth.fields)
    by_truth = {j: i for i, j in matched.items()}
    records = []
    for j, true in enumerate(truth.fields):
        i = by_truth.get(j)
        read = fields[i] if i is not None else None
        records.append({"kind": true.kind, "content": true.content, "text": true.text, "raw": true.raw,
                        "across_edge": true.across_edge,
                        "found": read is not None, "read": read.text if read else None,
                        "read_raw": read.raw if read else None, "exact": bool(read and read.text == true.text),
                        "confidence": read.confidence if read else None,
                        "needs_review": read.needs_review if read else None, "sources": true.sources,
                        **({} if read_template is None else {
                            "template_exact": read_template[f"f{j}"].text == true.text,
                            "template_read": read_template[f"f{j}"].text,
                            "template_needs_review": read_template[f"f{j}"].needs_review})})
    labels_returned = [t.text for t in truth.labels if any(
        _covers(f.box, t.box) and not (i in matched and _covers(truth.fields[matched[i]].box, t.box))
        for i, f in enumerate(fields))]
    unmatched = [i for i in range(len(fields)) if i not in matched]
    on_labels = [i for i in unmatched if any(_intersection(fields[i].box, t.box) >= 0.5 * fields[i].box[2]
                                             * fields[i].box[3] for t in truth.labels)]
    decisions = Counter()
    for candidate in candidates:
        on_field = max((iou(candidate.box, t.box) for t in truth.fields), default=0) >= MATCH_IOU
        in_label = any(_intersection(candidate.box, t.box) >= 0.5 * candidate.box[2] * candidate.box[3]
                       for t in truth.labels)
        truth_kind = "handwritten" if on_field else "printed" if in_label else "other"
        decisions[f"{truth_kind} judged {'printed' if candidate.printed else 'handwritten'}"] += 1
    return {"fields": records, "labels": len(truth.labels), "labels_returned": labels_returned,
            "returned": len(fields), "returned_on_labels": len(on_labels),
            "returned_on_nothing": len(unmatched) - len(on_labels), "decisions": dict(decisions),
            "matched": matched}


def mark_model_alone(pages: list[dict], recognizer: Recognizer, images: np.ndarray) -> None:
    """Adds to every field record "model_alone": whether the digit model reads each of the field's digit images
    right on its own (common.read_right_alone): the page reader cannot be expected to read a field where not."""
    records = [r for page in pages for r in page["fields"]]
    for r, alone in zip(records, read_right_alone(recognizer, images, [(r["text"], r["sources"]) for r in records])):
        r["model_alone"] = alone


def summarize(pages: list[dict], threshold: float) -> dict:
    """Metrics from the pages' records; threshold: the review rule's confidence threshold they were read with."""
    records = [r for page in pages for r in page["fields"]]

    def share(rows: list[dict], key: str) -> float | None:
        return float(np.mean([bool(r[key]) for r in rows])) if rows else None

    def block(rows: list[dict]) -> dict:
        alone = [r for r in rows if r.get("model_alone")]
        return {"n": len(rows), "exact": share(rows, "exact"), "found": share(rows, "found"),
                "model_alone": share(rows, "model_alone") if rows and "model_alone" in rows[0] else None,
                "exact_where_model_alone": share(alone, "exact")}

    found = [r for r in records if r["found"]]
    right, wrong = [r for r in found if r["exact"]], [r for r in found if not r["exact"]]
    decisions = Counter()
    for page in pages:
        decisions.update(page["decisions"])
    labels = sum(p["labels"] for p in pages)
    return {
        "pages": len(pages),
        "overall": block(records),
        "by_kind": {kind: block([r for r in records if r["kind"] == kind]) for kind in KINDS},
        "by_content": {content: block([r for r in records if r["content"] == content]) for content in CONTENTS},
        "plain_by_kind": {kind: block([r for r in records if r["kind"] == kind and r["content"] == "plain"])
                          for kind in KINDS},
        "comb_across_edge": block([r for r in records if r["kind"] == "comb" and r["across_edge"]]),
        "comb_within_cells": block([r for r in records if r["kind"] == "comb" and not r["across_edge"]]),
        "labels": labels,
        "labels_returned": sum(len(p["labels_returned"]) for p in pages),
        "labels_returned_share": sum(len(p["labels_returned"]) for p in pages) / max(1, labels),
        "labels_returned_examples": [t for p in pages for t in p["labels_returned"]][:20],
        "returned": sum(p["returned"] for p in pages),
        "returned_on_labels": sum(p["returned_on_labels"] for p in pages),
        "returned_on_nothing": sum(p["returned_on_nothing"] for p in pages),
        "missed": len(records) - len(found),
        "needs_review": {"threshold": threshold, "right": share(right, "needs_review"),
                         "wrong": share(wrong, "needs_review"), "n_right": len(right), "n_wrong": len(wrong)},
        # Wrong fields holding a digit the model misreads even alone (model_alone false), and how many of those
        # and of the other wrong fields needs_review flags.
        "wrong_model_alone": {
            "n": sum(not r.get("model_alone", True) for r in wrong),
            "flagged": share([r for r in wrong if not r.get("model_alone", True)], "needs_review"),
            "others_flagged": share([r for r in wrong if r.get("model_alone", True)], "needs_review")},
        # What other thresholds would flag: (threshold, share of wrong fields flagged, share of right ones).
        "review_curve": [(t, float(np.mean([r["confidence"] < t for r in wrong])) if wrong else None,
                          float(np.mean([r["confidence"] < t for r in right])) if right else None)
                         for t in REVIEW_THRESHOLDS],
        "decisions": dict(decisions),
        "misread": [{k: r.get(k) for k in ("kind", "content", "raw", "read", "read_raw", "confidence", "model_alone")}
                    for r in found if not r["exact"]][:40],
        **({"template": template_summary(records)} if records and "template_exact" in records[0] else {}),
    }


def template_summary(records: list[dict]) -> dict:
    """--template: per kind, the fields read exactly through the template and by the page reader (a field the page
    reader did not find counts as wrong), and needs_review on the template's wrong and right fields."""
    def exact(rows: list[dict], key: str) -> float | None:
        return float(np.mean([bool(r[key]) for r in rows])) if rows else None

    wrong = [r for r in records if not r["template_exact"]]
    right = [r for r in records if r["template_exact"]]
    return {"by_kind": {kind: {"n": len(rows), "template_exact": exact(rows, "template_exact"),
                               "page_exact": exact(rows, "exact")}
                        for kind in KINDS if (rows := [r for r in records if r["kind"] == kind])},
            "overall": {"n": len(records), "template_exact": exact(records, "template_exact"),
                        "page_exact": exact(records, "exact")},
            "needs_review": {"wrong": exact(wrong, "template_needs_review"), "n_wrong": len(wrong),
                             "right": exact(right, "template_needs_review"), "n_right": len(right)},
            "misread": [{k: r[k] for k in ("kind", "raw", "template_read", "read")} for r in wrong][:40]}


def draw_page(image: np.ndarray, truth, fields: list, outcome: dict) -> Image.Image:
    boxes = [(t.box, (40, 90, 230), "") for t in truth.fields]
    for i, field in enumerate(fields):
        j = outcome["matched"].get(i)
        right = j is not None and truth.fields[j].text == field.text
        on_label = j is None and any(_intersection(field.box, t.box) > 0 for t in truth.labels)
        colour = (0, 170, 0) if right else (220, 0, 200) if on_label else (220, 0, 0)
        boxes.append((field.box, colour, f"{field.raw} {field.confidence:.2f}"))
    return draw_boxes(image, boxes)


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f} %"


def template_markdown(summary: dict) -> str:
    rows = [[kind, s["n"], percent(s["template_exact"]), percent(s["page_exact"])]
            for kind, s in summary["by_kind"].items()]
    overall, review = summary["overall"], summary["needs_review"]
    rows.append(["all", overall["n"], percent(overall["template_exact"]), percent(overall["page_exact"])])
    return "\n\n".join([
        "The same fields read through a template of the page (`--template`: printed frames and ink boxes, with a "
        "margin, as a user would draw them):",
        markdown_table(["kind", "fields", "exact, template", "exact, page reader"], rows),
        f"needs_review on the template's fields: {percent(review['wrong'])} of {review['n_wrong']} wrong, "
        f"{percent(review['right'])} of {review['n_right']} right."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--split", choices=("test", "dev"), default="test",
                        help="test: MNIST test digits, the test fonts (the report); dev: the validation part of "
                             "MNIST's training digits and the dev fonts (for choosing thresholds)")
    parser.add_argument("--dev", action="store_const", const="dev", dest="split", help="the same as --split dev")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=4, help="pages drawn with their boxes into --out")
    parser.add_argument("--out", type=Path, default=Path("runs/fields"))
    parser.add_argument("--data", help="MNIST folder (default: $DIGITSCAN_DATA, then the cache)")
    parser.add_argument("--template", action="store_true",
                        help="also read each page through a template of its fields (Recognizer.read_template)")
    parser.add_argument("--method", choices=READ_METHODS, help="how each field is read (default: both readers)")
    parser.add_argument("--ensemble", action="store_true", help="cut digits with the shipped ensemble")
    args = parser.parse_args()
    args.dev = args.split == "dev"

    if args.dev:
        images, labels = load_mnist("train", args.data)
        _, val_idx = train_val_split(len(images), 0.1, 0)  # the classifier's split: its validation digits
        digits, fonts, name = (images[val_idx], labels[val_idx]), printed_fonts("dev"), "fields_pages_dev"
    else:
        digits, fonts, name = load_mnist("test", args.data), printed_fonts("test"), "fields_pages"
    recognizer = Recognizer.load(ensemble=args.ensemble)
    if args.method or args.ensemble:
        name += f"_{args.method or 'both'}{'_ensemble' if args.ensemble else ''}"
    if args.seed:
        name += f"_seed{args.seed}"
    args.out.mkdir(parents=True, exist_ok=True)
    pages, seconds = [], []
    for index in range(args.pages):
        image, truth = make_page(digits, np.random.default_rng([args.seed, index]), fonts)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")  # the page as a user's file: decoded like any upload
        start = time.perf_counter()
        fields = recognizer.read_page(buffer.getvalue(), method=args.method).fields
        seconds.append(time.perf_counter() - start)
        candidates = find_fields(decode_image(buffer.getvalue()))
        read_template = recognizer.read_template(
            buffer.getvalue(), page_template(truth, image.shape[1::-1]), method=args.method) if args.template else None
        outcome = score_page(fields, candidates, truth, read_template)
        pages.append(outcome)
        if index < args.examples:
            draw_page(image, truth, fields, outcome).save(args.out / f"{name}_{index:03d}.png")
    mark_model_alone(pages, recognizer, digits[0])
    summary = summarize(pages, review_confidence(args.method or "both"))
    summary["seconds_per_page"] = float(np.mean(seconds))
    info = machine()
    result = {"name": name, "seed": args.seed, "summary": summary, "machine": info}

    rows = [[kind, s["n"], percent(s["exact"]), percent(s["found"]), percent(summary["plain_by_kind"][kind]["exact"]),
             percent(s["model_alone"]), percent(s["exact_where_model_alone"])]
            for kind, s in summary["by_kind"].items()]
    overall = summary["overall"]
    rows.append(["all", overall["n"], percent(overall["exact"]), percent(overall["found"]), "",
                 percent(overall["model_alone"]), percent(overall["exact_where_model_alone"])])
    contents = [[content, s["n"], percent(s["exact"]), percent(s["found"])]
                for content, s in summary["by_content"].items()]
    review = summary["needs_review"]
    split = "MNIST training digits' validation part, FreeFont labels (dev)" if args.dev else \
        "MNIST test digits, Liberation labels (test)"
    markdown = "\n\n".join([
        f"{summary['pages']} generated form pages ({split}), seed {args.seed}, read by `Recognizer.read_page`:",
        markdown_table(["kind", "fields", "exact text", "found", "exact, plain digits only",
                        "digits read right alone", "exact where they are"], rows),
        markdown_table(["content", "fields", "exact text", "found"], contents),
        f"Printed labels returned as fields: {summary['labels_returned']} of {summary['labels']} "
        f"({percent(summary['labels_returned_share'])}); fields returned on printed text: "
        f"{summary['returned_on_labels']}, on nothing: {summary['returned_on_nothing']}; fields missed: "
        f"{summary['missed']}. needs_review (confidence < {review['threshold']}, or an alternative reading at least "
        f"{REVIEW_MARGIN} times as likely): {percent(review['wrong'])} of "
        f"{review['n_wrong']} wrong fields, {percent(review['right'])} of {review['n_right']} right ones. "
        f"Printed-or-handwritten decisions on candidates: {summary['decisions']}. "
        f"{summary['seconds_per_page']:.2f} s per page. Comb fields with a digit written across the cells' edge: "
        f"{percent(summary['comb_across_edge']['exact'])} exact of {summary['comb_across_edge']['n']}, the others "
        f"{percent(summary['comb_within_cells']['exact'])} of {summary['comb_within_cells']['n']}. "
        f"Wrong fields with a digit the model misreads even alone (its 28x28 image): "
        f"{summary['wrong_model_alone']['n']} of {review['n_wrong']}, needs_review on "
        f"{percent(summary['wrong_model_alone']['flagged'])} of them and on "
        f"{percent(summary['wrong_model_alone']['others_flagged'])} of the other wrong fields.",
        markdown_table(["needs_review below", "wrong fields flagged", "right fields flagged"],
                       [[t, percent(w), percent(r)] for t, w, r in summary["review_curve"]]),
        *([template_markdown(summary["template"])] if args.template else []),
        f"{machine_line(info)}. Command: `.venv/bin/python benchmarks/fields_pages.py --pages {args.pages}"
        f"{' --dev' if args.dev else ''}{f' --seed {args.seed}' if args.seed else ''}"
        f"{' --template' if args.template else ''}{f' --method {args.method}' if args.method else ''}"
        f"{' --ensemble' if args.ensemble else ''}`.",
    ])
    write_results(name, result, markdown)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
