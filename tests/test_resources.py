"""Memory stays bounded for the largest image the decoder accepts (MAX_PIXELS itself), measured in a fresh process.

The bound: the float32 result (4 bytes per pixel) plus the decoded image (at most 4: RGBA, CMYK, 32-bit), plus 1 for
strips, decoder buffers and the allocator = 9 bytes per pixel over the process's RSS after its imports.
docs/security.md has the measured numbers for every mode (benchmarks/hostile_inputs.py).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitscan.constants import MAX_PIXELS

WIDTH, HEIGHT = 8000, 5000  # 40,000,000 pixels: exactly MAX_PIXELS, the largest image accepted
BYTES_PER_PIXEL = 9

# The child reports its own high-water mark, VmHWM. Not getrusage's ru_maxrss: Linux carries the parent's high-water
# mark into a child started with vfork + exec (as subprocess does), so in a test process that has loaded torch and
# MNIST, RUSAGE_SELF in the child and RUSAGE_CHILDREN here both start at that process's peak (measured: a 400 MB
# parent makes an 8 MB child report 409 MB), which would make this test pass whatever preprocess does.
MEASURE = """
import sys
from digitscan.image.prepare import preprocess

def high_water() -> int:
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))

baseline = high_water()
x = preprocess(sys.argv[1])
print(baseline, high_water(), float(x.max()))
"""


def largest_image(mode: str) -> Image.Image:
    """A digit-like stroke on a page of WIDTH x HEIGHT in the given mode."""
    page = Image.new("L", (WIDTH, HEIGHT), 255)
    ImageDraw.Draw(page).line([(2400, 1000), (5600, 1000), (3600, 4200)], fill=0, width=300)  # a 7
    if mode == "F":
        return Image.fromarray(np.asarray(page, np.float32) / 255, "F")
    return page.convert(mode)


@pytest.mark.parametrize(("mode", "fmt", "options"), [
    ("RGBA", "PNG", {"compress_level": 1}),  # 4 bytes per pixel, alpha composited: the common worst case
    ("F", "TIFF", {"compression": "tiff_deflate"}),  # 32-bit float pixels: the decoded image is as big as the result
], ids=["rgba-png", "float-tiff"])
def test_largest_accepted_image_has_bounded_peak_memory(tmp_path, mode, fmt, options):
    assert WIDTH * HEIGHT == MAX_PIXELS
    path = tmp_path / f"largest.{fmt.lower()}"
    largest_image(mode).save(path, fmt, **options)
    run = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    baseline, peak, ink = (float(v) for v in run.stdout.split())
    assert ink == 1.0  # the stroke was found: the whole image really was decoded and preprocessed
    used = peak - baseline
    assert used >= 4 * WIDTH * HEIGHT  # the float32 result alone is 4 bytes per pixel: the measurement sees it
    assert used <= BYTES_PER_PIXEL * WIDTH * HEIGHT, f"{used / 2**20:.0f} MiB = {used / (WIDTH * HEIGHT):.1f} B/pixel"
