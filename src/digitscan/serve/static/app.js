// The drawing page: a canvas to write on, live predictions from /api/predict (one digit), /api/read (a number) or
// /api/page (every field of a form page, or a template's fields).
// Plain JavaScript, no build step. Strokes are kept as point lists so undo and a change of mode can redraw them.
"use strict";

const DEBOUNCE_MS = 150; // wait this long after the last change before asking the server ...
const MAX_WAIT_MS = 450; // ... but never longer than this while the pen keeps moving, so the answer follows live
const PAPER = "#ffffff";
const INK = "#111111";
const PEN_WIDTH = 0.065; // of the canvas height: ~18 px on the 280 px pad, like a felt pen relative to the digit
const PAD_SIZE = { digit: [280, 280], number: [560, 280], page: [560, 760] }; // page: an A4 sheet's shape
const API = { digit: "/api/predict?include_input=1", number: "/api/read", page: "/api/page" };

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const pad = $("pad");
const boxes = $("boxes");
const result = $("result");
const answer = $("answer");
const confidence = $("confidence");
const errorBox = $("error");
const placeholder = $("placeholder");
const modelInput = $("model-input");
const modelInputEmpty = $("model-input-empty");
const fileInput = $("file");
const undoButton = $("undo");
const clearButton = $("clear");
const templateInput = $("template-file");

const state = {
  mode: "digit",
  strokes: [], // each stroke: [[x, y], ...] in canvas pixels
  drawing: null, // the stroke under the pen, with its pointer id
  photo: null, // {file, image (or null when the browser cannot show it), width, height}
  template: null, // page mode: a FORM.json File sent with the page, or null
  seq: 0, // number of the latest request; answers to older ones are ignored
  controller: null,
  timer: null,
  pendingSince: null,
};

// ---- drawing ---------------------------------------------------------------------------------------------------

function isEmpty() {
  return state.strokes.length === 0 && state.photo === null;
}

function redraw() {
  ctx.fillStyle = PAPER;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (state.photo && state.photo.image) {
    const { image, width, height } = state.photo;
    const scale = Math.min(canvas.width / width, canvas.height / height); // "contain", like the box overlay
    const w = width * scale;
    const h = height * scale;
    ctx.drawImage(image, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  }
  for (const stroke of state.strokes) drawStroke(stroke, 0);
}

function drawStroke(points, from) {
  ctx.strokeStyle = INK;
  ctx.fillStyle = INK;
  ctx.lineWidth = PEN_WIDTH * canvas.height;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (points.length === 1) { // a tap: a dot
    ctx.beginPath();
    ctx.arc(points[0][0], points[0][1], ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  const start = Math.max(0, from - 1);
  ctx.moveTo(points[start][0], points[start][1]);
  for (let i = start + 1; i < points.length; i++) ctx.lineTo(points[i][0], points[i][1]);
  ctx.stroke();
}

function canvasPoint(event) {
  const rect = canvas.getBoundingClientRect();
  return [
    ((event.clientX - rect.left) * canvas.width) / rect.width,
    ((event.clientY - rect.top) * canvas.height) / rect.height,
  ];
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  if (state.photo) { // writing on the pad starts a new drawing
    state.photo = null;
    state.strokes = [];
  }
  const stroke = [canvasPoint(event)];
  state.drawing = { pointerId: event.pointerId, stroke };
  state.strokes.push(stroke);
  clearBoxes();
  redraw();
  changed();
});

canvas.addEventListener("pointermove", (event) => {
  if (!state.drawing || state.drawing.pointerId !== event.pointerId) return;
  event.preventDefault();
  const stroke = state.drawing.stroke;
  const from = stroke.length;
  // Coalesced events carry the pen's full path between frames (smoother curves on fast strokes).
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) stroke.push(canvasPoint(e));
  drawStroke(stroke, from);
  changed();
});

function endStroke(event) {
  if (!state.drawing || state.drawing.pointerId !== event.pointerId) return;
  state.drawing = null;
  changed();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function undo() {
  if (state.drawing) return;
  if (state.strokes.length) state.strokes.pop();
  else {
    state.photo = null;
    fitPad();
  }
  clearBoxes();
  redraw();
  changed();
}

function clearAll() {
  state.strokes = [];
  state.photo = null;
  state.drawing = null;
  fitPad();
  clearBoxes();
  redraw();
  changed();
}

undoButton.addEventListener("click", undo);
clearButton.addEventListener("click", clearAll);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  }
});

// ---- mode: one digit or a whole number ---------------------------------------------------------------------------

// The pad's size: the mode's, except that a form page takes the uploaded page's shape (a landscape form is not shown
// small in a portrait pad).
function fitPad() {
  let [width, height] = PAD_SIZE[state.mode];
  const photo = state.photo;
  if (state.mode === "page" && photo && photo.image) {
    height = Math.round(Math.min(1.6 * width, Math.max(0.4 * width, (width * photo.height) / photo.width)));
  }
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width; // strokes keep their coordinates: a digit drawn in the square pad stays on the left
    canvas.height = height;
  }
}

function setMode(mode) {
  state.mode = mode;
  fitPad();
  pad.dataset.mode = mode;
  result.dataset.mode = mode;
  $("digit-view").hidden = mode !== "digit";
  $("number-view").hidden = mode !== "number";
  $("page-view").hidden = mode !== "page";
  $("template-tools").hidden = mode !== "page";
  $("upload").textContent = mode === "page" ? "Upload a form…" : "Upload a photo…";
  clearBoxes();
  redraw();
  changed({ now: true });
}

for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => radio.checked && setMode(radio.value));
}

// ---- photos: file picker and drag-and-drop -----------------------------------------------------------------------

$("upload").addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", () => {
  if (fileInput.files.length) usePhoto(fileInput.files[0]);
  fileInput.value = ""; // choosing the same file again still counts as a change
});

for (const target of [pad, document.body]) {
  target.addEventListener("dragover", (event) => {
    if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
    event.preventDefault();
    pad.classList.add("dragging");
  });
  target.addEventListener("dragleave", (event) => {
    if (event.target === target) pad.classList.remove("dragging");
  });
  target.addEventListener("drop", (event) => {
    event.preventDefault();
    pad.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) usePhoto(file);
  });
}

async function usePhoto(file) {
  let image = null;
  try { // the server reads more formats than some browsers show (TIFF): then the photo is sent but not drawn
    image = await createImageBitmap(file);
  } catch (err) {
    image = null;
  }
  state.photo = { file, image, width: image ? image.width : 0, height: image ? image.height : 0 };
  state.strokes = [];
  state.drawing = null;
  fitPad();
  clearBoxes();
  redraw();
  changed({ now: true });
}

// ---- page mode: an optional template --------------------------------------------------------------------------------

$("template").addEventListener("click", () => templateInput.click());
templateInput.addEventListener("change", () => {
  if (templateInput.files.length) setTemplate(templateInput.files[0]);
  templateInput.value = "";
});
$("template-remove").addEventListener("click", () => setTemplate(null));

function setTemplate(file) {
  state.template = file;
  $("template-name").textContent = file ? `Template: ${file.name}` : "";
  $("template-name").hidden = !file;
  $("template-remove").hidden = !file;
  $("template").textContent = file ? "Another template…" : "Use a template…";
  clearBoxes();
  changed({ now: true });
}

// ---- talking to the server ----------------------------------------------------------------------------------------

function changed({ now = false } = {}) {
  undoButton.disabled = isEmpty();
  clearButton.disabled = isEmpty();
  clearTimeout(state.timer);
  state.timer = null;
  if (isEmpty()) { // an empty pad shows nothing: no request, no digit
    state.seq += 1;
    if (state.controller) state.controller.abort();
    state.pendingSince = null;
    showEmpty();
    return;
  }
  result.dataset.status = "pending";
  const time = performance.now();
  if (state.pendingSince === null) state.pendingSince = time;
  const wait = now ? 0 : Math.max(0, Math.min(DEBOUNCE_MS, state.pendingSince + MAX_WAIT_MS - time));
  state.timer = setTimeout(submit, wait);
}

function canvasBlob() {
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("cannot encode the drawing"))), "image/png"));
}

async function submit() {
  state.timer = null;
  state.pendingSince = null;
  const seq = ++state.seq;
  if (state.controller) state.controller.abort();
  const controller = (state.controller = new AbortController());
  const mode = state.mode;
  const photo = state.photo;
  const source = photo ? { width: photo.width, height: photo.height } : { width: canvas.width, height: canvas.height };
  try {
    const body = new FormData();
    if (photo) body.append("file", photo.file, photo.file.name || "photo");
    else body.append("file", await canvasBlob(), "drawing.png");
    if (mode === "page" && state.template) body.append("template", state.template, state.template.name);
    const response = await fetch(API[mode], { method: "POST", body, signal: controller.signal });
    const data = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
    if (seq !== state.seq) return; // a newer request is on its way
    if (!response.ok) showError(data.detail || `request failed (${response.status})`);
    else if (mode === "digit") showPrediction(data);
    else if (mode === "number") showNumber(data, source);
    else showPage(data);
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    showError("cannot reach the server: " + err.message);
  }
  if (seq === state.seq && state.timer === null) result.dataset.status = "done";
}

// ---- showing results ----------------------------------------------------------------------------------------------

const bars = [];
for (let digit = 0; digit < 10; digit++) { // ten rows, filled in by showPrediction
  const item = document.createElement("li");
  item.dataset.digit = String(digit);
  item.innerHTML = `<span class="bar-label">${digit}</span>` +
    `<span class="bar-track"><span class="bar-fill"></span></span><span class="bar-value">–</span>`;
  $("bars").append(item);
  bars.push(item);
}

function percent(p) {
  if (p > 0 && p < 0.005) return "<1%"; // not "0%": the model never rules a class out entirely
  if (p >= 0.995 && p < 1) return ">99%";
  return `${(100 * p).toFixed(p < 0.0995 ? 0 : 1).replace(/\.0$/, "")}%`;
}

function setBars(probabilities, top) {
  bars.forEach((item, digit) => {
    const p = probabilities ? probabilities[digit] : 0;
    item.querySelector(".bar-fill").style.width = `${(100 * p).toFixed(1)}%`;
    item.querySelector(".bar-value").textContent = probabilities ? percent(p) : "–";
    item.classList.toggle("top", digit === top);
    item.setAttribute("aria-label", probabilities ? `${digit}: ${percent(p)}` : `${digit}: no prediction`);
  });
}

function setAnswer(kind, text, detail) {
  answer.dataset.kind = kind;
  answer.textContent = text;
  confidence.textContent = detail;
  placeholder.hidden = kind !== "empty";
  errorBox.hidden = true;
  errorBox.textContent = "";
}

function showEmpty() {
  setAnswer("empty", "", "");
  delete answer.dataset.digit;
  setBars(null, -1);
  modelInput.hidden = true;
  modelInput.removeAttribute("src");
  modelInputEmpty.hidden = false;
  $("digits").replaceChildren();
  $("fields").replaceChildren();
  clearBoxes();
  result.dataset.status = "idle";
}

function showPrediction(p) {
  if (p.is_digit) {
    setAnswer("digit", String(p.digit), `confidence ${percent(p.confidence)}`);
    answer.dataset.digit = String(p.digit);
  } else {
    setAnswer("not-digit", "not a digit", `no digit is likely enough (best: ${percent(p.confidence)})`);
    delete answer.dataset.digit;
  }
  setBars(p.probabilities, p.is_digit ? p.digit : -1);
  if (p.input_image) {
    modelInput.src = p.input_image;
    modelInput.alt = "The 28 by 28 pixel image the model reads";
    modelInput.hidden = false;
    modelInputEmpty.hidden = true;
  }
}

function showNumber(r, source) {
  if (r.text) setAnswer("number", r.text, `confidence ${percent(r.confidence)}`);
  else setAnswer("not-digit", "no digits found", "");
  delete answer.dataset.digit;
  const list = $("digits");
  list.replaceChildren(...r.digits.map((d) => {
    const item = document.createElement("li");
    item.textContent = `${d.digit} (${percent(d.confidence)})`;
    return item;
  }));
  drawBoxes(r.digits.map((d) => ({ box: d.box, label: String(d.digit) })), source);
}

// A page's fields: a list without a template (each with its kind), {name: field} with one (each with its value,
// validity and the reason it needs a check). Boxes are in the uploaded page's pixels, whose size the answer gives.
function showPage(r) {
  const named = !Array.isArray(r.fields);
  const fields = named ? Object.entries(r.fields).map(([name, f]) => ({ name, ...f })) : r.fields;
  const toCheck = fields.filter((f) => f.needs_review).length;
  if (fields.length) {
    const count = `${fields.length} field${fields.length === 1 ? "" : "s"}`;
    setAnswer("page", count, toCheck ? `${toCheck} to check by hand` : "none needs a check");
  } else setAnswer("not-digit", "no fields found", "");
  delete answer.dataset.digit;
  $("fields").replaceChildren(...fields.map((f) => {
    const item = document.createElement("li");
    item.classList.toggle("review", f.needs_review);
    const reading = document.createElement("span");
    reading.className = "field-reading";
    reading.textContent = f.raw || f.text || "(empty)";
    const detail = document.createElement("span");
    detail.className = "field-detail";
    const parts = [f.name || f.kind, `confidence ${percent(f.confidence)}`];
    if (named && f.value !== null && f.value !== f.text) parts.push(`value ${f.value}`);
    detail.textContent = parts.join(" · ");
    item.append(reading, " ", detail);
    if (f.needs_review) {
      const badge = document.createElement("span");
      badge.className = "review-badge";
      badge.textContent = "check";
      if (f.reason) badge.title = f.reason;
      item.append(" ", badge);
      if (f.reason) {
        const reason = document.createElement("span");
        reason.className = "field-reason";
        reason.textContent = f.reason;
        item.append(reason);
      }
    }
    return item;
  }));
  const [width, height] = r.size;
  drawBoxes(fields.map((f) => ({
    box: f.box,
    label: `${f.name ? f.name + ": " : ""}${f.raw || f.text || "?"}${f.needs_review ? " (check)" : ""}`,
    review: f.needs_review,
  })), { width, height });
}

function showError(message) {
  answer.dataset.kind = "error";
  answer.textContent = "";
  confidence.textContent = "";
  placeholder.hidden = true;
  errorBox.hidden = false;
  errorBox.textContent = message;
  setBars(null, -1);
}

// Digit boxes are in the pixel coordinates of the image that was sent; the SVG's viewBox uses the same coordinates
// and "xMidYMid meet" fits them exactly where the canvas (or the contained photo) is shown.
// items: [{box, label, review}]; a box to review is drawn in the warning colour, dashed.
function drawBoxes(items, source) {
  clearBoxes();
  if (!source.width || !source.height) return;
  boxes.setAttribute("viewBox", `0 0 ${source.width} ${source.height}`);
  const stroke = Math.max(1.5, 0.008 * Math.max(source.width, source.height));
  const fontSize = stroke * (state.mode === "page" ? 5 : 8); // a page's labels are longer and its fields closer
  for (const item of items) {
    const [x, y, w, h] = item.box;
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    Object.entries({ x, y, width: w, height: h, "stroke-width": stroke }).forEach(([k, v]) => rect.setAttribute(k, v));
    const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
    Object.entries({ x, y: Math.max(y - stroke * 2, fontSize), "font-size": fontSize })
      .forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = item.label;
    if (item.review) {
      rect.classList.add("review");
      label.classList.add("review");
    }
    boxes.append(rect, label);
  }
}

function clearBoxes() {
  boxes.replaceChildren();
}

setMode(document.querySelector('input[name="mode"]:checked').value);
