"""The drawing page in a real browser: Playwright drives Debian's headless Chromium against a real `digitscan serve`.

Digits are drawn with the mouse from the stroke shapes in digitscan.synthetic.strokes. Screenshots go to
out/screenshots/.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from digitscan.synthetic.strokes import DIGIT_STROKES, render_number, resample, stroke_digit

from helpers import EXAMPLES, REPO
from helpers.forms import iou, small_form
from helpers.live_server import live_server

SCREENSHOTS = REPO / "out" / "screenshots"
CHROMIUM = "/usr/bin/chromium"  # Debian's (make test installs it); never a Playwright-downloaded browser
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1000, "height": 760}
PHONE = {"width": 390, "height": 844}
pytestmark = pytest.mark.slow  # a real browser: `make test-fast` leaves these out


@pytest.fixture(scope="module")
def server_url():
    with live_server() as server:
        yield server.url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Debian's Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser: Browser, url: str, viewport: dict = DESKTOP):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.problems = []  # uncaught errors and console errors: the page must have none
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
    page.goto(url)
    return context, page


@pytest.fixture
def page(browser, server_url):
    context, page = open_page(browser, server_url)
    yield page
    context.close()
    assert page.problems == []


def draw_digit(page: Page, digit: int, centre: float = 0.5, height: float = 0.7) -> None:
    """Draw one digit with the mouse: its strokes scaled to `height` of the pad, centred at `centre` of its width."""
    pad = page.locator("#canvas").bounding_box()
    h = height * pad["height"]
    w = 0.75 * h
    cx, cy = pad["x"] + centre * pad["width"], pad["y"] + pad["height"] / 2
    for stroke in DIGIT_STROKES[digit]:
        points = [(cx + (x - 0.5) * w, cy + (y - 0.5) * h) for x, y in resample(stroke, step=0.04)]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point)
        page.mouse.up()


def settled(page: Page) -> None:
    """Wait until the answer to the latest change is shown (the page debounces and drops stale answers)."""
    expect(page.locator("#result")).to_have_attribute("data-status", "done", timeout=10_000)


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", animations="disabled")  # bars at their final width


@pytest.mark.parametrize("digit", [0, 2, 3, 4, 7, 8])
def test_drawn_digit_is_recognized(page, digit):
    draw_digit(page, digit)
    settled(page)
    expect(page.locator("#answer")).to_have_text(str(digit))
    expect(page.locator("#answer")).to_have_attribute("data-kind", "digit")
    expect(page.locator(f'#bars li[data-digit="{digit}"]')).to_have_class("top")
    values = page.locator("#bars .bar-value").all_inner_texts()
    assert len(values) == 10 and all(v.endswith("%") for v in values)
    expect(page.locator("#model-input")).to_be_visible()  # the 28x28 image the model saw
    assert page.locator("#model-input").evaluate("img => img.naturalWidth") == 28
    screenshot(page, f"digit_{digit}")


def test_empty_canvas_shows_nothing(page):
    api_calls = []
    page.on("request", lambda request: "/api/" in request.url and api_calls.append(request.url))
    answer = page.locator("#answer")
    expect(answer).to_have_attribute("data-kind", "empty")
    expect(answer).to_have_text("")
    expect(page.locator("#placeholder")).to_be_visible()
    expect(page.locator("#clear")).to_be_disabled()
    assert api_calls == []  # nothing drawn: the page does not even ask

    draw_digit(page, 7)
    settled(page)
    expect(answer).to_have_text("7")
    page.click("#undo")  # the 7 is a single stroke: undo empties the pad
    expect(answer).to_have_attribute("data-kind", "empty")
    expect(answer).to_have_text("")
    assert page.locator("#bars .bar-value").all_inner_texts() == ["–"] * 10
    expect(page.locator("#model-input")).to_be_hidden()

    draw_digit(page, 4)
    settled(page)
    page.click("#clear")
    expect(answer).to_have_text("")
    calls = len(api_calls)
    page.wait_for_timeout(400)  # longer than the debounce: still no request for the empty pad
    assert len(api_calls) == calls
    screenshot(page, "empty")


def test_upload_a_photo(page):
    page.set_input_files("#file", EXAMPLES / "seven_ink_on_paper.png")
    settled(page)
    expect(page.locator("#answer")).to_have_text("7")

    # Drag and drop onto the pad: a real DataTransfer holding a File, as the browser builds it for a dropped file.
    data = base64.b64encode((EXAMPLES / "three_blue_pen.png").read_bytes()).decode()
    transfer = page.evaluate_handle("""data => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "three.png", { type: "image/png" }));
        return transfer;
    }""", data)
    page.dispatch_event("#pad", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#pad", "drop", {"dataTransfer": transfer})
    settled(page)
    expect(page.locator("#answer")).to_have_text("3")
    screenshot(page, "upload")


def test_a_file_that_is_not_an_image_shows_the_error(page):
    page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just some text"})
    settled(page)
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("not a supported image")
    expect(page.locator("#answer")).to_have_text("")
    page.problems.remove("Failed to load resource: the server responded with a status of 415 (Unsupported Media Type)")


def test_number_mode_reads_a_drawn_number(page):
    page.get_by_label("A number").check()
    for position, digit in enumerate([4, 2, 7]):
        draw_digit(page, digit, centre=0.25 + 0.25 * position, height=0.6)
    settled(page)
    expect(page.locator("#answer")).to_have_text("427")
    expect(page.locator("#boxes rect")).to_have_count(3)
    expect(page.locator("#digits li")).to_have_count(3)
    expect(page.locator("#bars")).to_be_hidden()
    screenshot(page, "number")


def test_number_mode_on_an_uploaded_photo(page):
    page.get_by_label("A number").check()
    image, boxes = render_number([stroke_digit(int(c), seed=30 + i) for i, c in enumerate("507")], seed=3,
                                 ink=(30, 50, 160), noise=4)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    page.set_input_files("#file", {"name": "cheque.jpg", "mimeType": "image/jpeg", "buffer": buffer.getvalue()})
    settled(page)
    expect(page.locator("#answer")).to_have_text("507")
    rects = page.locator("#boxes rect")
    expect(rects).to_have_count(3)
    drawn = [[round(float(rect.get_attribute(k))) for k in ("x", "y", "width", "height")] for rect in rects.all()]
    assert all(abs(a - b) <= 6 for got, true in zip(drawn, boxes, strict=True) for a, b in zip(got, true, strict=True))
    screenshot(page, "number_photo")


def png_file(name: str, image) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return {"name": name, "mimeType": "image/png", "buffer": buffer.getvalue()}


def test_page_mode_boxes_every_field_of_an_uploaded_form(page):
    page.get_by_label("A form page").check()
    expect(page.locator("#template")).to_be_visible()
    form, truth, _ = small_form()
    page.set_input_files("#file", png_file("form.png", form))
    settled(page)
    expect(page.locator("#answer")).to_have_text("3 fields")
    fields = page.locator("#fields li")
    expect(fields).to_have_count(3)
    readings = [item.locator(".field-reading").inner_text() for item in fields.all()]
    assert sorted(reading.replace(" ", "") for reading in readings) == sorted(truth)
    rects = page.locator("#boxes rect")
    expect(rects).to_have_count(3)
    drawn = [[float(rect.get_attribute(k)) for k in ("x", "y", "width", "height")] for rect in rects.all()]
    assert all(max(iou(box, corners) for box in drawn) > 0.5 for corners in truth.values())  # in the form's pixels
    screenshot(page, "page_mode")

    # A template: its named fields, each checked; a template that is not JSON is one clear error.
    template = {"name": "small form", "size": [900, 500], "fields": {
        "account": {"box": [150, 100, 310, 76], "units": "px", "kind": "comb", "pattern": "digits{6}"},
        "code": {"box": [195, 335, 230, 80], "units": "px", "pattern": "digits{5}"}}}  # 8532 has 4: to check
    page.set_input_files("#template-file", {"name": "form.json", "mimeType": "application/json",
                                            "buffer": json.dumps(template).encode()})
    settled(page)
    expect(page.locator("#template-name")).to_have_text("Template: form.json")
    expect(page.locator("#answer")).to_have_text("2 fields")
    expect(page.locator("#confidence")).to_have_text("1 to check by hand")
    expect(fields.nth(0)).to_contain_text("account")
    expect(fields.nth(1).locator(".review-badge")).to_have_text("check")
    expect(fields.nth(1).locator(".field-reason")).to_contain_text("5 digits expected")
    expect(page.locator("#boxes rect.review")).to_have_count(1)
    screenshot(page, "page_mode_template")

    page.set_input_files("#template-file", {"name": "broken.json", "mimeType": "application/json",
                                            "buffer": b"{not json"})
    settled(page)
    expect(page.locator("#error")).to_contain_text("not valid JSON")
    page.problems.remove("Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)")
    page.click("#template-remove")
    settled(page)
    expect(page.locator("#answer")).to_have_text("3 fields")


def test_keyboard_and_labels(page):
    for control in ("Undo", "Clear", "Upload a photo…"):
        expect(page.get_by_role("button", name=control)).to_be_visible()
    expect(page.get_by_label("Upload a photo")).to_have_count(1)
    expect(page.get_by_role("img", name="Drawing area: draw with a mouse, pen or finger")).to_be_visible()

    draw_digit(page, 0, centre=0.3, height=0.5)
    draw_digit(page, 1, centre=0.75, height=0.5)
    settled(page)
    page.keyboard.press("Control+z")  # undo the 1
    settled(page)
    expect(page.locator("#answer")).to_have_text("0")
    page.locator("#clear").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#answer")).to_have_attribute("data-kind", "empty")
    page.get_by_label("A number").focus()  # radio buttons are reachable and switch modes from the keyboard
    page.keyboard.press("Space")
    expect(page.locator("#pad")).to_have_attribute("data-mode", "number")


def test_phone_sized_viewport(browser, server_url):
    context, page = open_page(browser, server_url, PHONE)
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
        pad = page.locator("#canvas").bounding_box()
        assert pad["width"] >= 0.75 * PHONE["width"] and pad["x"] >= 0 and pad["x"] + pad["width"] <= PHONE["width"]
        draw_digit(page, 3)
        settled(page)
        expect(page.locator("#answer")).to_have_text("3")
        screenshot(page, "phone")
    finally:
        context.close()
    assert page.problems == []
