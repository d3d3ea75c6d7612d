// xmem annotate: the page. Plain JavaScript, no build step, no network but this server.
"use strict";

const TOKEN = document.querySelector('meta[name="xmem-token"]').content;
const $ = (id) => document.getElementById(id);

const state = {
  info: null,          // GET /api/session
  frame: 0,            // the frame shown
  object: null,        // the selected object id
  tool: "click",
  clicks: [],          // the clicks of this frame and object since the last change of either
  bitmap: null,        // the frame shown (ImageBitmap, maybe smaller than the video)
  bitmapFrame: -1,
  ids: null,           // Uint8Array H×W of object ids of the frame shown
  overlay: null,       // canvas H×W with the masks drawn for the view
  scale: 1, ox: 0, oy: 0, fitted: false,
  pointer: null,       // the pointer over the view, in frame pixels (for the brush's outline)
  drag: null,          // a box, a stroke or a pan in progress
  playing: false,
  loading: 0,          // requests in flight that change what is shown
  pendingFrame: null,  // a frame asked for while another was loading
  version: -1,
  job: null,
  lastError: null,
  edits: 0,            // edit requests in flight
};
window.xmem = {
  state,
  edits: [],  // every edit sent, in order (for scripts and tests that replay a session)
  idle: () => state.loading === 0 && state.edits === 0 && state.pendingFrame === null &&
    state.bitmapFrame === state.frame && !(state.job && state.job.state === "running"),
};

// -- requests --------------------------------------------------------------------------------------------
async function api(method, path, body) {
  const options = { method, headers: { "X-XMem-Token": TOKEN } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return data;
}

function say(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
  if (error) state.lastError = text;
}

async function edit(method, path, body) {
  state.edits += 1;
  window.xmem.edits.push({ method, path, body: body === undefined ? null : body });
  try {
    const info = await api(method, path, body);
    say("");
    applyInfo(info);
    await loadMask(state.frame);
    return info;
  } catch (e) {
    say(e.message, true);
    return null;
  } finally {
    state.edits -= 1;
  }
}

// -- session state ---------------------------------------------------------------------------------------
function applyInfo(info) {
  state.info = info;
  state.version = info.version;
  $("video-name").textContent = `${info.name}, ${info.width}×${info.height}, ${info.frames} frames`;
  const slider = $("slider");
  slider.max = String(info.frames - 1);
  if (state.object !== null && !info.objects.some((o) => o.id === state.object)) state.object = null;
  if (state.object === null && info.objects.length) state.object = info.objects[0].id;
  renderObjects();
  renderMarks();
  renderJob(info.job);
  buildOverlay();
  draw();
}

function colourOf(id) {
  const obj = state.info && state.info.objects.find((o) => o.id === id);
  return obj ? obj.colour : [255, 255, 255];
}

function renderObjects() {
  const list = $("objects");
  list.replaceChildren();
  state.info.objects.forEach((obj, i) => {
    const li = document.createElement("li");
    li.dataset.id = obj.id;
    li.classList.toggle("selected", obj.id === state.object);
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = i < 9 ? String(i + 1) : "";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${obj.colour.join(",")})`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = obj.name;
    name.title = "double-click to rename";
    const del = document.createElement("button");
    del.className = "delete";
    del.textContent = "×";
    del.title = `delete ${obj.name} from every frame`;
    del.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (confirm(`Delete ${obj.name} from every frame?`)) edit("DELETE", `/api/objects/${obj.id}`);
    });
    li.addEventListener("click", () => selectObject(obj.id));
    name.addEventListener("dblclick", () => renameObject(li, obj));
    li.append(key, swatch, name, del);
    list.append(li);
  });
}

function renameObject(li, obj) {
  const input = document.createElement("input");
  input.value = obj.name;
  input.maxLength = 200;
  li.querySelector(".name").replaceWith(input);
  input.focus();
  input.select();
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    const name = input.value.trim();
    if (save && name && name !== obj.name) edit("PATCH", `/api/objects/${obj.id}`, { name });
    else renderObjects();
  };
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") finish(true);
    if (ev.key === "Escape") finish(false);
    ev.stopPropagation();
  });
  input.addEventListener("blur", () => finish(true));
}

function selectObject(id) {
  if (state.object !== id) { state.clicks = []; draw(); }
  state.object = id;
  // classes only: re-rendering would replace the row under a double-click
  document.querySelectorAll("#objects li").forEach((li) => li.classList.toggle("selected", Number(li.dataset.id) === id));
}

function renderMarks() {
  const n = Math.max(1, state.info.frames - 1);
  const keys = $("keyframes");
  keys.replaceChildren(...state.info.key_frames.map((f) => {
    const d = document.createElement("div");
    d.style.left = `${(100 * f) / n}%`;
    d.title = `key frame ${f}`;
    d.addEventListener("click", () => showFrame(f));
    return d;
  }));
  const masked = $("masked");
  masked.replaceChildren(...state.info.masked.map(([a, b]) => {
    const d = document.createElement("div");
    d.style.left = `${(100 * a) / n}%`;
    d.style.width = `${Math.max(0.2, (100 * (b - a + 1)) / (n + 1))}%`;
    return d;
  }));
  const f = state.frame;
  $("undo").disabled = !state.info.undo.includes(f);
  $("redo").disabled = !state.info.redo.includes(f);
}

function renderJob(job) {
  state.job = job;
  const running = !!job && job.state === "running";
  $("cancel").disabled = !running;
  for (const id of ["prop-forward", "prop-backward", "prop-both", "export"]) $(id).disabled = running;
  const bar = $("progress");
  if (!job) {
    bar.value = 0;
    $("progress-text").textContent = "";
    return;
  }
  bar.max = Math.max(1, job.total);
  bar.value = job.done;
  const what = job.kind === "export" ? "export" : `propagation ${job.direction || ""}`;
  const speed = job.frames_per_second ? `, ${job.frames_per_second.toFixed(1)} frames/s` : "";
  const text = { running: "", done: " done", cancelled: " cancelled", failed: ` failed: ${job.error}` }[job.state];
  $("progress-text").textContent = `${what}: ${job.done}/${job.total}${speed}${text}`;
}

// -- frames and masks ------------------------------------------------------------------------------------
function viewWidth() {
  // the frame's width in device pixels at the present zoom, rounded up, never above the video's
  const canvas = $("view");
  const s = state.fitted ? state.scale : canvas.width / state.info.width;
  const want = Math.ceil((state.info.width * s) / 64) * 64;
  return Math.max(64, Math.min(state.info.width, want));
}

async function showFrame(index) {
  if (!state.info) return;
  index = Math.max(0, Math.min(state.info.frames - 1, index));
  if (index !== state.frame) state.clicks = [];
  state.frame = index;
  $("slider").value = String(index);
  $("frame-label").textContent = `${index} / ${state.info.frames - 1}`;
  renderMarks();
  if (state.loading > 0) {  // one load at a time: remember the latest wish
    state.pendingFrame = index;
    return;
  }
  state.loading += 1;
  try {
    const [frame] = await Promise.all([
      fetch(`/api/frames/${index}.jpg?width=${viewWidth()}`).then((r) => {
        if (!r.ok) throw new Error(`frame ${index}: ${r.status}`);
        return r.blob();
      }).then((b) => createImageBitmap(b)),
      loadMask(index, false),
    ]);
    if (state.bitmap) state.bitmap.close();
    state.bitmap = frame;
    state.bitmapFrame = index;
    buildOverlay();
    draw();
  } catch (e) {
    say(e.message, true);
  } finally {
    state.loading -= 1;
  }
  if (state.pendingFrame !== null) {
    const next = state.pendingFrame;
    state.pendingFrame = null;
    if (next !== state.bitmapFrame) await showFrame(next);
  }
}

async function loadMask(index, redraw = true) {
  const r = await fetch(`/api/masks/${index}.png`);
  if (!r.ok) throw new Error(`mask ${index}: ${r.status}`);
  const bitmap = await createImageBitmap(await r.blob(), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const { width, height } = state.info;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const ids = new Uint8Array(width * height);
  for (let i = 0; i < ids.length; i++) ids[i] = rgba[4 * i];
  if (index === state.frame) {
    state.ids = ids;
    if (redraw) { buildOverlay(); draw(); }
  }
  return ids;
}

function buildOverlay() {
  if (!state.info || !state.ids) return;
  const { width: w, height: h } = state.info;
  if (!state.overlay || state.overlay.width !== w || state.overlay.height !== h) {
    state.overlay = document.createElement("canvas");
    state.overlay.width = w;
    state.overlay.height = h;
  }
  const ctx = state.overlay.getContext("2d");
  const image = ctx.createImageData(w, h);
  const out = image.data;
  const ids = state.ids;
  const alpha = Math.round(2.55 * Number($("opacity").value));
  const outline = $("outline").checked;
  const colours = new Map(state.info.objects.map((o) => [o.id, o.colour]));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const id = ids[i];
      if (id === 0) continue;
      const c = colours.get(id) || [255, 255, 255];
      const edge = outline && (
        (x > 0 && ids[i - 1] !== id) || (x < w - 1 && ids[i + 1] !== id) ||
        (y > 0 && ids[i - w] !== id) || (y < h - 1 && ids[i + w] !== id));
      out[4 * i] = c[0];
      out[4 * i + 1] = c[1];
      out[4 * i + 2] = c[2];
      out[4 * i + 3] = edge ? 255 : alpha;
    }
  }
  ctx.putImageData(image, 0, 0);
}

// -- the view ----------------------------------------------------------------------------------------------
function resizeCanvas() {
  const canvas = $("view");
  const rect = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(rect.width * dpr));
  canvas.height = Math.max(1, Math.round(rect.height * dpr));
  if (!state.fitted) fit();
  draw();
}

function fit() {
  if (!state.info) return;
  const canvas = $("view");
  state.scale = Math.min(canvas.width / state.info.width, canvas.height / state.info.height) * 0.98;
  state.ox = (canvas.width - state.info.width * state.scale) / 2;
  state.oy = (canvas.height - state.info.height * state.scale) / 2;
  state.fitted = true;
}

function zoomAt(factor, cx, cy) {
  const s = Math.max(0.05, Math.min(40, state.scale * factor));
  state.ox = cx - ((cx - state.ox) * s) / state.scale;
  state.oy = cy - ((cy - state.oy) * s) / state.scale;
  state.scale = s;
  draw();
  if (state.bitmap && state.bitmap.width < viewWidth()) showFrame(state.frame);  // sharper frame when zoomed in
}

function draw() {
  const canvas = $("view");
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.info) return;
  const { width: w, height: h } = state.info;
  ctx.setTransform(state.scale, 0, 0, state.scale, state.ox, state.oy);
  ctx.imageSmoothingEnabled = true;
  if (state.bitmap) ctx.drawImage(state.bitmap, 0, 0, w, h);
  ctx.imageSmoothingEnabled = false;
  if (state.overlay) ctx.drawImage(state.overlay, 0, 0);
  const lw = 1.5 / state.scale;
  for (const [x, y, label] of state.clicks) {
    ctx.beginPath();
    ctx.arc(x, y, 5 / state.scale, 0, 2 * Math.PI);
    ctx.fillStyle = label ? "#3ddc84" : "#ff5252";
    ctx.fill();
    ctx.lineWidth = lw;
    ctx.strokeStyle = "#fff";
    ctx.stroke();
  }
  if (state.pointer && (state.tool === "brush" || state.tool === "eraser")) {
    ctx.beginPath();
    ctx.arc(state.pointer[0], state.pointer[1], Number($("brush-size").value), 0, 2 * Math.PI);
    ctx.lineWidth = lw;
    ctx.strokeStyle = state.tool === "eraser" ? "#000" : "#fff";
    ctx.stroke();
  }
  const d = state.drag;
  if (d && d.kind === "box") {
    ctx.lineWidth = lw * 1.5;
    ctx.strokeStyle = "#fff";
    ctx.setLineDash([6 / state.scale, 4 / state.scale]);
    ctx.strokeRect(d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0);
    ctx.setLineDash([]);
  }
  if (d && d.kind === "stroke" && d.points.length) {
    const c = colourOf(state.object);
    ctx.strokeStyle = d.erase ? "rgba(0,0,0,0.6)" : `rgba(${c.join(",")},0.7)`;
    ctx.lineWidth = 2 * d.radius;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(d.points[0][0], d.points[0][1]);
    for (const [x, y] of d.points) ctx.lineTo(x, y);
    if (d.points.length === 1) ctx.lineTo(d.points[0][0] + 0.01, d.points[0][1]);
    ctx.stroke();
  }
}

function toImage(ev) {
  const canvas = $("view");
  const rect = canvas.getBoundingClientRect();
  const px = ((ev.clientX - rect.left) * canvas.width) / rect.width;
  const py = ((ev.clientY - rect.top) * canvas.height) / rect.height;
  return [(px - state.ox) / state.scale, (py - state.oy) / state.scale, px, py];
}

function inside(x, y) {
  return x >= 0 && y >= 0 && x < state.info.width && y < state.info.height;
}

function clampPoint(x, y) {
  return [Math.max(0, Math.min(state.info.width - 1, x)), Math.max(0, Math.min(state.info.height - 1, y))];
}

function needObject() {
  if (state.object !== null) return true;
  say("add an object first (+ add)", true);
  return false;
}

function onPointerDown(ev) {
  if (!state.info) return;
  const [x, y, px, py] = toImage(ev);
  $("view").focus();
  if (ev.button === 1 || (ev.button === 0 && ev.ctrlKey)) {
    state.drag = { kind: "pan", px, py, ox: state.ox, oy: state.oy };
    $("view").setPointerCapture(ev.pointerId);
    return;
  }
  if (state.tool === "click") {
    if (ev.button !== 0 && ev.button !== 2) return;
    if (!inside(x, y) || !needObject()) return;
    const label = ev.button === 2 || ev.shiftKey ? 0 : 1;
    state.clicks.push([x, y, label]);
    draw();
    edit("POST", `/api/frames/${state.frame}/clicks`, {
      object: state.object,
      points: state.clicks.map(([cx, cy]) => [cx, cy]),
      labels: state.clicks.map((c) => c[2]),
    }).then((info) => { if (!info) { state.clicks.pop(); draw(); } });
    return;
  }
  if (ev.button !== 0 || !needObject()) return;
  $("view").setPointerCapture(ev.pointerId);
  if (state.tool === "box") {
    const [cx, cy] = clampPoint(x, y);
    state.drag = { kind: "box", x0: cx, y0: cy, x1: cx, y1: cy };
  } else {
    const radius = Number($("brush-size").value);
    state.drag = { kind: "stroke", erase: state.tool === "eraser", radius, points: [clampPoint(x, y)] };
  }
  draw();
}

function onPointerMove(ev) {
  const d = state.drag;
  const [x, y, px, py] = toImage(ev);
  if (state.tool === "brush" || state.tool === "eraser") {
    state.pointer = [x, y];
    if (!d) draw();
  }
  if (!d) return;
  if (d.kind === "pan") {
    state.ox = d.ox + px - d.px;
    state.oy = d.oy + py - d.py;
  } else if (d.kind === "box") {
    [d.x1, d.y1] = clampPoint(x, y);
  } else {
    const [cx, cy] = clampPoint(x, y);
    const last = d.points[d.points.length - 1];
    if (Math.hypot(cx - last[0], cy - last[1]) >= 1) d.points.push([cx, cy]);
  }
  draw();
}

function onPointerUp() {
  const d = state.drag;
  state.drag = null;
  if (!d) return;
  state.clicks = [];
  if (d.kind === "box") {
    const box = [Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1), Math.max(d.y0, d.y1)];
    if (box[2] - box[0] < 3 || box[3] - box[1] < 3) { draw(); return; }
    edit("POST", `/api/frames/${state.frame}/box`, { object: state.object, box });
  } else if (d.kind === "stroke") {
    edit("POST", `/api/frames/${state.frame}/brush`, {
      object: state.object, points: d.points, radius: d.radius, erase: d.erase,
    });
  }
  draw();
}

// -- commands -------------------------------------------------------------------------------------------
async function addObject() {
  const info = await edit("POST", "/api/objects", {});
  if (info) selectObject(info.id);
}

function setTool(tool) {
  state.tool = tool;
  $("view").classList.toggle("brush", tool === "brush" || tool === "eraser");
  state.clicks = [];
  document.querySelectorAll(".tool").forEach((b) => b.classList.toggle("on", b.dataset.tool === tool));
  draw();
}

async function propagate(direction) {
  try {
    const { job } = await api("POST", "/api/propagate", { frame: state.frame, direction });
    renderJob(job);
    say("");
  } catch (e) {
    say(e.message, true);
  }
}

async function exportAll() {
  try {
    const { job, folder } = await api("POST", "/api/export", {
      alpha: $("export-alpha").checked, overlay: $("export-overlay").checked,
    });
    $("downloads").dataset.folder = folder;
    $("downloads").replaceChildren();
    renderJob(job);
  } catch (e) {
    say(e.message, true);
  }
}

function showDownloads() {
  const box = $("downloads");
  const files = ["xmem-export.zip", "summary.json"];
  if ($("export-overlay").checked) files.splice(1, 0, "overlay.mp4");
  box.replaceChildren(...files.map((name) => {
    const a = document.createElement("a");
    a.href = `/api/export/${name}`;
    a.download = name;
    a.textContent = name;
    return a;
  }));
  const note = document.createElement("p");
  note.className = "hint";
  note.textContent = `also written to ${box.dataset.folder || "the workspace's export folder"}`;
  box.append(note);
}

function play() {
  state.playing = !state.playing;
  $("play").innerHTML = state.playing ? "&#10074;&#10074;" : "&#9654;";
  if (!state.playing) return;
  const interval = 1000 / Math.min(30, (state.info && state.info.fps) || 24);
  const step = async () => {
    if (!state.playing) return;
    const began = performance.now();
    if (state.frame >= state.info.frames - 1) { play(); return; }
    await showFrame(state.frame + 1);
    setTimeout(step, Math.max(0, interval - (performance.now() - began)));
  };
  step();
}

// -- progress stream ------------------------------------------------------------------------------------
function listen() {
  const events = new EventSource("/api/events");
  events.onmessage = async (ev) => {
    const status = JSON.parse(ev.data);
    const job = status.job;
    const was = state.job;
    renderJob(job);
    const ended = !!job && job.state !== "running" && !!was && was.id === job.id && was.state === "running";
    if (job && job.kind === "propagate" && job.frame !== null && $("follow").checked &&
        (job.state === "running" || ended) && job.frame !== state.frame) {
      showFrame(job.frame);  // the view follows; loads coalesce to the latest frame
    }
    if (status.version !== state.version && (!job || job.state !== "running")) {
      try { applyInfo(await api("GET", "/api/session")); await showFrame(state.frame); } catch (e) { say(e.message, true); }
    }
    if (ended && job.kind === "export" && job.state === "done") showDownloads();
    if (ended && job.state === "failed") say(`${job.kind} failed: ${job.error}`, true);
  };
  events.onerror = () => say("connection to the server lost; retrying", true);
  events.onopen = () => { if (state.lastError && state.lastError.startsWith("connection")) say(""); };
}

// -- wiring ---------------------------------------------------------------------------------------------
function wire() {
  const view = $("view");
  view.addEventListener("pointerdown", onPointerDown);
  view.addEventListener("pointermove", onPointerMove);
  view.addEventListener("pointerup", onPointerUp);
  view.addEventListener("contextmenu", (ev) => ev.preventDefault());
  view.addEventListener("pointerleave", () => { state.pointer = null; draw(); });
  view.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const [, , px, py] = toImage(ev);
    zoomAt(Math.pow(1.0015, -ev.deltaY), px, py);
  }, { passive: false });
  window.addEventListener("resize", resizeCanvas);
  document.querySelectorAll(".tool").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  $("brush-size").addEventListener("input", () => { $("brush-size-value").textContent = $("brush-size").value; });
  $("opacity").addEventListener("input", () => { buildOverlay(); draw(); });
  $("outline").addEventListener("change", () => { buildOverlay(); draw(); });
  $("zoom-fit").addEventListener("click", () => { fit(); draw(); });
  $("zoom-in").addEventListener("click", () => zoomAt(1.25, view.width / 2, view.height / 2));
  $("zoom-out").addEventListener("click", () => zoomAt(0.8, view.width / 2, view.height / 2));
  $("add-object").addEventListener("click", addObject);
  $("undo").addEventListener("click", () => { state.clicks = []; edit("POST", `/api/frames/${state.frame}/undo`); });
  $("redo").addEventListener("click", () => { state.clicks = []; edit("POST", `/api/frames/${state.frame}/redo`); });
  $("prop-forward").addEventListener("click", () => propagate("forward"));
  $("prop-backward").addEventListener("click", () => propagate("backward"));
  $("prop-both").addEventListener("click", () => propagate("both"));
  $("cancel").addEventListener("click", () => api("POST", "/api/cancel").catch((e) => say(e.message, true)));
  $("export").addEventListener("click", exportAll);
  $("slider").addEventListener("input", () => showFrame(Number($("slider").value)));
  $("prev").addEventListener("click", () => showFrame(state.frame - 1));
  $("next").addEventListener("click", () => showFrame(state.frame + 1));
  $("play").addEventListener("click", play);
  document.addEventListener("keydown", (ev) => {
    if (ev.target instanceof HTMLInputElement && ev.target.type !== "range" && ev.target.type !== "checkbox") return;
    if (!state.info) return;
    const key = ev.key;
    if (key === "ArrowLeft") showFrame(state.frame - 1);
    else if (key === "ArrowRight") showFrame(state.frame + 1);
    else if (key === " ") play();
    else if (key >= "1" && key <= "9") {
      const obj = state.info.objects[Number(key) - 1];
      if (obj) selectObject(obj.id);
    } else if (key === "z" && !ev.ctrlKey) $("undo").click();
    else if (key === "y" || (key === "z" && ev.ctrlKey)) $("redo").click();
    else if (key === "f") { fit(); draw(); }
    else if (key === "+" || key === "=") $("zoom-in").click();
    else if (key === "-") $("zoom-out").click();
    else return;
    ev.preventDefault();
  });
}

async function start() {
  wire();
  try {
    applyInfo(await api("GET", "/api/session"));
  } catch (e) {
    say(e.message, true);
    return;
  }
  resizeCanvas();
  await showFrame(0);
  listen();
}

start();
