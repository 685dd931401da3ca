"""The JPEG segment list, read without decoding: how many scans and markers a file has, and its frame size.

`jpeg_structure(data, stop_after=(scans, markers))` walks the markers from SOI to EOI in C-speed steps (segment
lengths, and one regular-expression search over each scan's entropy-coded data), so image.decode can refuse a file
whose decoding would cost minutes before Pillow ever sees it. Nothing here judges a file: it only counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIGNATURE = b"\xff\xd8\xff"  # SOI and the first byte of the next marker; Pillow identifies JPEG by the same bytes
_SOS, _EOI, _SOI, _TEM = 0xDA, 0xD9, 0xD8, 0x01
# Start-of-frame markers carry the frame size: SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# A marker: 0xFF, then any code but 00 (a stuffed 0xFF byte inside entropy data), FF (fill bytes before a marker:
# the search moves on to the last one) and D0..D7 (restart markers, which belong to the scan they sit in). A single
# fixed-width pattern, so the search is linear even over megabytes of 0xFF.
_MARKER = re.compile(rb"\xff([^\x00\xff\xd0-\xd7])")


@dataclass(frozen=True)
class JpegStructure:
    scans: int  # SOS segments: a baseline JPEG has 1 (or 1 per component), a progressive one ~6-24
    markers: int  # segments of every kind (SOS included; restart markers inside scans are not segments)
    width: int  # from the first start-of-frame segment; 0 when there is none (yet)
    height: int
    complete: bool  # the walk reached EOI (False: truncated, or stopped early at `stop_after`)
    # Bytes outside any segment before the first scan: fill bytes and garbage, which Pillow's header parser steps
    # through one at a time in Python (5 MB of them take seconds); a real encoder writes none.
    stray_bytes: int = 0


def jpeg_structure(data: bytes, stop_after: tuple[int, int] | None = None) -> JpegStructure:
    """Count the scans and markers of JPEG bytes (from SOI up to EOI), as libjpeg will meet them.

    stop_after=(scans, markers): stop as soon as either count passes its number, so a file of 100,000 scans costs
    no more to refuse than one of 101. Garbage between segments is skipped the way libjpeg skips it, by searching for
    the next marker; a truncated file simply ends the walk.
    """
    max_scans, max_markers = stop_after or (len(data), len(data))
    scans = markers = width = height = stray = 0
    position = 2  # after SOI
    while scans <= max_scans and markers <= max_markers:
        found = _MARKER.search(data, position)
        if not scans:  # in the header; inside and between scans libjpeg skips such bytes itself, in C
            stray += (found.start() if found else len(data)) - position
        if found is None:
            break
        code, position = found[1][0], found.end()
        markers += 1
        if code == _EOI:
            return JpegStructure(scans, markers, width, height, complete=True, stray_bytes=stray)
        if code in (_SOI, _TEM):  # markers without a length field
            continue
        if position + 2 > len(data):
            break
        length = int.from_bytes(data[position : position + 2], "big")  # includes its own two bytes
        if length < 2:
            break  # corrupt: Pillow will say so
        if code in _SOF and not width and position + 7 <= len(data):
            # length (2), precision (1), height (2), width (2)
            height = int.from_bytes(data[position + 3 : position + 5], "big")
            width = int.from_bytes(data[position + 5 : position + 7], "big")
        if code == _SOS:
            scans += 1  # its entropy-coded data follows the header; the next search skips over it
        position += length
    return JpegStructure(scans, markers, width, height, complete=False, stray_bytes=stray)
