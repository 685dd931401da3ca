"""Named constants shared by every module: image geometry, classes, every limit, the MNIST files and the paper's
figures. Import from here instead of writing 28, 20, a limit or a digest twice; docs/security.md lists the limits.
"""

IMAGE_SIZE = 28  # model input is IMAGE_SIZE x IMAGE_SIZE, ink = 1.0, background = 0.0
DIGIT_BOX = 20  # MNIST convention: the digit is fitted into 20x20 and centred by mass in 28x28
NUM_CLASSES = 10
DIGIT_CLASSES = [str(d) for d in range(NUM_CLASSES)]

# Inputs: what decode_image accepts (docs/security.md).
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}  # what folders are searched for
MAX_PIXELS = 40_000_000  # default limit on width * height, checked from the header before decoding
MAX_FILE_BYTES = 20 * 2**20
# JPEG decoding cost, checked from the marker list before Pillow decodes (docs/security.md). libjpeg decodes every
# scan over the whole image, so a progressive JPEG repeating one cheap scan 100,000 times costs minutes of CPU in a
# few MB. Pillow's progressive JPEGs have 6 (grey), 10 (colour) or 18 (CMYK) scans; libtiff stops a JPEG inside a
# TIFF at 100 by default (LIBTIFF_JPEG_MAX_ALLOWED_SCAN_NUMBER).
MAX_JPEG_SCANS = 100
# Scans x pixels: each scan costs 0.8-1.8 ms per megapixel on the 2 shared cores (benchmarks/hostile_inputs.py), so
# this bounds the scans to ~1-2 s. It still admits 25 scans at MAX_PIXELS, more than Pillow or libjpeg ever write.
MAX_JPEG_SCAN_PIXELS = 1_000_000_000
MAX_JPEG_MARKERS = 1000  # segments of every kind; a camera JPEG has ~10-60 (ICC and XMP split over many)
MAX_JPEG_STRAY_BYTES = 64 * 2**10  # fill or garbage bytes in the header, which Pillow walks in Python (~1 us each)
MAX_IDX_BYTES = 64 * 2**20  # default limit on an IDX file's decompressed size (MNIST's largest is 47 MB)
# The server's connections (digitscan.serve.connections); their limits are Settings fields.
FILE_DESCRIPTOR_RESERVE = 64  # open files the server needs besides its connections: model files, pipes, sockets
REPEATED_LOG_INTERVAL_S = 10.0  # a log line repeated once per bad connection goes through once per this long
PREPROCESS_MODES = ("robust", "paper")
WORK_SIDE = 512  # longer side of the ink finder's working copy for a line or a page (`read`): ~10x a digit's 20 px box
# One digit (`predict`) is looked for on a copy this small first, then again around it when it came out smaller than
# DIGIT_WORK_SIDE there (a digit far away in a big frame); at 2x the 20 px box a digit loses nothing to the resize.
PREDICT_WORK_SIDE = 160
DIGIT_WORK_SIDE = 40
# A JPEG for one digit is decoded at the smallest DCT scale that keeps this many px on its longer side (twice the
# first look's copy): a 640x480 photo at half size, a 12 MP one at an eighth.
PREDICT_DECODE_SIDE = 2 * PREDICT_WORK_SIDE

# Reading numbers.
READ_METHODS = ("sequence", "segments", "both")  # the line reader, cutting into digits first, or both averaged
LINE_HEIGHT = 32  # the line reader's strip height: a 20 px digit plus room for a wandering baseline
LINE_STRIDE = 4  # strip columns per output frame of the line reader
# What the line reader reads besides digits: the separators kept in `raw`, and one class for every mark written
# around a number (=, *, $, #, dashes, strokes through the end of an amount), which is never part of it.
SEPARATORS = ".,-/:"
MARK = "~"
READ_TIME_LIMIT_S = 5.0  # per image; the worst pages measured take ~1 s (docs/security.md), real numbers far less
MAX_COMPONENTS = 200  # more candidate components than this is noise: only the largest are considered
MAX_GROUP = 4  # a digit is made of at most this many atoms (pieces of a broken digit, slices of touching digits)

# Reading forms (digitscan.fields, docs/templates.md).
MAX_TEMPLATE_BYTES = 2**20  # a FORM.json larger than this is refused before it is parsed; real ones are a few KiB
MAX_DESKEW_DEG = 10.0  # align "deskew" looks for a page rotation within +-this; a scan tilted more is not a scan
# A field needs review when its confidence is under REVIEW_CONFIDENCE, or when its best alternative reading has at
# least REVIEW_MARGIN times the reading's confidence. Kept after the sweep on the dev split of benchmarks/fields.py
# (`--dev --count 500 --sweep`; never its test split): no setting flags 80 % of the wrong fields at <= 10 % of the
# right ones, 0.9 stays closest to it, and at 0.8 and above the margin changes nothing (docs/reading-fields.md).
REVIEW_CONFIDENCE = 0.9
REVIEW_MARGIN = 0.5
# Pages and templates read every field with both readers (`--method both`), whose averaged probabilities are less
# sure than the line reader's own: on 200 dev pages of benchmarks/fields_pages.py (seed 4, never the test pages)
# 0.9 flags 14 % of the right fields, 0.8 9 % and 64 % of the wrong ones (docs/pages.md).
REVIEW_CONFIDENCE_BOTH = 0.8

# Reading form pages (`read --layout page`, digitscan.reading.page).
PAGE_WORK_SIDE = 2000  # longer side of a page's working copy: a form at ~170 dpi, its digits still 30+ px tall
PAGE_TIME_LIMIT_S = 30.0  # per page: finding the fields plus reading each (~10 ms a field); generated pages take ~1 s
MAX_PAGE_COMPONENTS = 20_000  # pieces of ink on a page considered (the largest); a printed form has a few thousand
MAX_PAGE_FIELDS = 200  # fields read per page at most (top to bottom); a form has tens

# Models.
INFER_BATCH = 1024  # inputs per forward pass: bounds memory for huge stacks
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (dy, dx) one-pixel shifts the shipped ensemble averages over
MAX_CLASSES = 1000  # a model file naming more classes than this is refused
MAX_CLASS_NAME = 64  # characters; class names are printed in results, so they must be short printable text

# The paper's test accuracies (its Fig. 15), which `digitscan compare` and the benchmarks stand beside.
PAPER_RESULTS = {"SVM": 0.9777, "ANN": 0.9770, "CNN": 0.9830}

# File stems of the four MNIST IDX files; each may be stored raw or as "<stem>.gz".
MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

# sha256 of the *decompressed* bytes (shared/data/README.md), with the exact decompressed sizes.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_SIZES = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}

# Public mirrors serving the gzipped files; override with DIGITSCAN_MIRRORS (comma-separated base URLs).
MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
