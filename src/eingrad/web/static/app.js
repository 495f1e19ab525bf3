// The eingrad playground: plain JavaScript, no build step. Talks to /api/parse and /api/derive
// (docs/web.md); renders LaTeX with the vendored KaTeX. User text only ever goes into the page
// as text nodes (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const editor = $("program"), backdrop = $("backdrop"), gutter = $("gutter");
const wrtField = $("wrt"), modeField = $("mode"), orderField = $("order"), backendField = $("backend");
const statusLine = $("status"), errorBox = $("error");

let wrtTouched = false;     // the user typed in "with respect to": stop filling it with the inputs
let errorMark = null;       // {line, column, endLine, endColumn} of the error shown in the editor
let parseTimer = null, parseSeq = 0, deriveSeq = 0;
let examples = [];

// ------------------------------------------------------------------ the editor

function codePoints(s) { return Array.from(s); }

// The [start, end) code-point offsets of 1-based (line, column) .. (endLine, endColumn).
function offsets(text, mark) {
  const lines = text.split("\n");
  const at = (line, column) => {
    let k = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) k += codePoints(lines[i]).length + 1;
    return k + Math.max(0, column - 1);
  };
  const start = at(mark.line, mark.column);
  let end = mark.endLine ? at(mark.endLine, mark.endColumn) : start + 1;
  if (end <= start) end = start + 1;
  return [start, end];
}

function renderBackdrop() {
  const text = editor.value;
  backdrop.textContent = "";
  if (errorMark) {
    const chars = codePoints(text);
    const [start, end] = offsets(text, errorMark);
    const marked = chars.slice(start, end).join("");
    backdrop.append(chars.slice(0, start).join(""));
    const mark = document.createElement("mark");
    mark.className = "err";
    mark.textContent = marked === "" || marked === "\n" ? " " : marked;  // past the end: mark a space
    backdrop.append(mark, chars.slice(end).join("") + "\n");
  } else {
    backdrop.append(text + "\n");
  }
  const count = text.split("\n").length;
  gutter.textContent = "";
  for (let i = 1; i <= count; i++) {
    const div = document.createElement("div");
    div.textContent = String(i);
    if (errorMark && errorMark.line === i) div.className = "bad";
    gutter.append(div);
  }
  syncScroll();
}

function syncScroll() {
  backdrop.scrollTop = editor.scrollTop;
  backdrop.scrollLeft = editor.scrollLeft;
  gutter.scrollTop = editor.scrollTop;
}

function setProgram(text) {
  editor.value = text;
  errorMark = null;
  renderBackdrop();
}

// ------------------------------------------------------------------ errors

function showError(error) {
  errorBox.textContent = "";
  const head = document.createElement("div");
  const kind = document.createElement("strong");
  kind.textContent = error.type + ": ";
  head.append(kind, error.message || "");
  errorBox.append(head);
  if (error.line) {
    const where = document.createElement("div");
    where.className = "where";
    where.textContent = `line ${error.line}, column ${error.column}`;
    errorBox.append(where);
    errorMark = { line: error.line, column: error.column, endLine: error.end_line, endColumn: error.end_column };
  } else {
    errorMark = null;
  }
  if (error.hint) {
    const hint = document.createElement("div");
    hint.className = "hint";
    hint.textContent = "hint: " + error.hint;
    errorBox.append(hint);
  }
  errorBox.hidden = false;
  renderBackdrop();
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = "";
  if (errorMark) { errorMark = null; renderBackdrop(); }
}

// ------------------------------------------------------------------ the API

async function post(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (err) {
    return { ok: false, data: { error: { type: "NetworkError", message: "the server cannot be reached: " + err.message } } };
  }
  let data;
  try { data = await response.json(); } catch (err) {
    data = { error: { type: "ServerError", message: `HTTP ${response.status}: not JSON` } };
  }
  return { ok: response.ok, data };
}

function wrtList() { return wrtField.value.split(/[\s,]+/).filter(Boolean); }

async function parseNow() {
  const seq = ++parseSeq;
  const text = editor.value;
  if (!text.trim()) { clearError(); return; }
  const { ok, data } = await post("/api/parse", { program: text });
  if (seq !== parseSeq) return;  // a newer edit went out since
  if (!ok) { showError(data.error); return; }
  clearError();
  const inputs = Object.keys(data.program.inputs);
  const known = wrtList().filter((w) => inputs.includes(w));
  if (!wrtTouched || (wrtList().length && !known.length)) wrtField.value = inputs.join(" ");
}

function scheduleParse() {
  clearTimeout(parseTimer);
  parseTimer = setTimeout(parseNow, 400);
}

function request() {
  const mode = modeField.value;
  return {
    program: editor.value, wrt: wrtList(), mode, backend: backendField.value,
    order: mode === "hessian" ? 2 : mode === "grad" ? 1 : Math.max(1, parseInt(orderField.value, 10) || 1),
  };
}

async function derive() {
  const seq = ++deriveSeq;
  const req = request();
  updateLink(req);
  $("go").disabled = true;
  statusLine.textContent = "computing…";
  const started = performance.now();
  const { ok, data } = await post("/api/derive", req);
  if (seq !== deriveSeq) return;
  $("go").disabled = false;
  if (!ok) {
    statusLine.textContent = "";
    $("results").hidden = true;  // the results of another program must not pass for this one's
    showError(data.error);
    return;
  }
  clearError();
  statusLine.textContent = `done in ${((performance.now() - started) / 1000).toFixed(2)} s`;
  if (!wrtField.value.trim()) wrtField.value = data.wrt.join(" ");
  render(data);
}

// ------------------------------------------------------------------ results

function tex(latex, element, display = true) {
  element.textContent = "";
  if (window.katex) {
    try {
      window.katex.render(latex, element, { displayMode: display, throwOnError: false, strict: "ignore" });
      return;
    } catch (err) { /* shown as text below */ }
  }
  element.textContent = latex;
}

function node(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function render(data) {
  $("results").hidden = false;
  $("results").classList.remove("stale");
  const warnings = $("warnings");
  warnings.textContent = "";
  for (const w of data.warnings) warnings.append(node("div", "", `${w.type}: ${w.message}`));

  tex(data.program.latex, $("program-out"));
  const titles = { diff: data.order === 1 ? "Derivative" : `Derivative of order ${data.order}`,
    hessian: "Hessian", grad: "Gradient program (reverse mode)" };
  $("result-title").textContent = titles[data.mode];
  const result = $("result");
  tex(data.latex, result);
  if (data.seed) {
    result.append(node("p", "note", `The output is not a scalar: ${data.seed} is its upstream gradient, an input.`));
  }

  const matrix = $("matrix");
  matrix.textContent = "";
  for (const m of data.matrix) {
    const row = node("div", "matrix-row");
    if (m.latex) { const span = node("div", "math"); tex(m.latex, span); row.append(span); }
    else row.append(node("span", "reason", `${m.name}: ${m.reason}`));
    matrix.append(row);
  }

  const steps = $("steps");
  steps.textContent = "";
  if (data.order > 1) steps.append(node("p", "note", "The steps of the first derivative:"));
  for (const s of data.steps) {
    if (data.steps.length > 1) steps.append(node("p", "note", `with respect to ${s.wrt}:`));
    const list = node("ol", "steps");
    for (const step of s.steps) {
      const li = node("li");
      li.append(node("div", "reason", step.reason));
      if (step.latex) { const eq = node("div", "math"); tex(step.latex, eq); li.append(eq); }
      list.append(li);
    }
    const last = node("li");
    last.append(node("div", "reason", "result"));
    const eq = node("div", "math"); tex(s.result_latex, eq); last.append(eq);
    list.append(last);
    steps.append(list);
  }

  const code = data.code;
  const what = data.mode === "grad" ? "the gradient program" : `the derivative with respect to ${data.wrt[0]}`;
  if (code.source) {
    $("code").textContent = code.source;
    $("code-note").textContent = `The ${code.backend} code eingrad generates for ${what}.`;
  } else {
    $("code").textContent = "";
    $("code-note").textContent = `No ${code.backend} code: ${code.error.message}` + (code.error.hint ? ` (${code.error.hint})` : "");
  }

  const check = data.check;
  $("check-note").textContent = `Random inputs${check.positive ? " in [0.5, 1.5]" : ""}, every index of size ${check.size}; ` +
    `central differences with ε = ${check.eps}, relative tolerance ${check.rtol}.`;
  const body = $("check").querySelector("tbody");
  body.textContent = "";
  for (const row of check.rows) {
    const tr = node("tr");
    tr.append(node("td", "num", row.wrt), node("td", "num", `(${row.shape.join(", ")})`), node("td", "", row.what),
      node("td", "num", row.error === null ? "—" : row.error.toExponential(1)));
    const verdict = node("td", row.pass ? "pass" : "fail", row.pass ? "✓ agrees" : "✗ " + (row.message || "disagrees"));
    tr.append(verdict);
    body.append(tr);
  }

  drawGraph(data.graph);
}

// ------------------------------------------------------------------ the graph

const SVG = "http://www.w3.org/2000/svg";

function svgNode(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// Graphviz's SVG when the server has it; otherwise a layered layout: each node in the column of
// its longest path from an input, columns left to right, edges as curves.
function drawGraph(graph) {
  const box = $("graph");
  box.textContent = "";
  if (graph.svg) { box.innerHTML = graph.svg; return; }
  const depth = {};
  const preds = {};
  for (const n of graph.nodes) { preds[n.id] = []; depth[n.id] = 0; }
  for (const [a, b] of graph.edges) if (preds[b]) preds[b].push(a);
  for (let changed = true, guard = 0; changed && guard < graph.nodes.length + 1; guard++) {
    changed = false;
    for (const n of graph.nodes) for (const p of preds[n.id]) {
      if (depth[p] !== undefined && depth[p] + 1 > depth[n.id]) { depth[n.id] = depth[p] + 1; changed = true; }
    }
  }
  // Inputs sit one column left of their first reader, so that a late input is not far away.
  for (const n of graph.nodes) {
    if (n.kind !== "input") continue;
    const readers = graph.edges.filter(([a]) => a === n.id).map(([, b]) => depth[b]);
    if (readers.length) depth[n.id] = Math.max(0, Math.min(...readers) - 1);
  }
  const columns = [];
  for (const n of graph.nodes) (columns[depth[n.id]] = columns[depth[n.id]] || []).push(n);
  // A long statement shows its target only (the whole statement is its tooltip).
  for (const n of graph.nodes) n.short = n.label.length > 32 && n.label.includes(" = ") ? n.label.split(" = ")[0] : n.label;
  const charWidth = 7.3, rowHeight = 44, gap = 56, pad = 10;
  const width = (n) => Math.max(40, n.short.length * charWidth + 24);
  const pos = {};
  let x = pad, maxY = 0;
  for (const column of columns) {
    if (!column) continue;
    // Each node near its predecessors (the mean of their rows), to cut down crossing edges.
    const row = (n) => {
      const ys = preds[n.id].filter((p) => pos[p]).map((p) => pos[p].y);
      return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : Infinity;
    };
    column.sort((a, b) => row(a) - row(b));
    const w = Math.max(...column.map(width));
    column.forEach((n, i) => { pos[n.id] = { x: x + (w - width(n)) / 2, y: pad + i * rowHeight, w: width(n) }; });
    maxY = Math.max(maxY, pad + column.length * rowHeight);
    x += w + gap;
  }
  const svg = svgNode("svg", { width: x - gap + pad, height: maxY, viewBox: `0 0 ${x - gap + pad} ${maxY}`,
    role: "img", "aria-label": "computation graph" });
  const defs = svgNode("defs", {});
  const marker = svgNode("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7,
    markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svgNode("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#7d8792" }));
  defs.append(marker);
  svg.append(defs);
  const h = 28;
  for (const [a, b] of graph.edges) {
    const p = pos[a], q = pos[b];
    if (!p || !q) continue;
    const x1 = p.x + p.w, y1 = p.y + h / 2, x2 = q.x, y2 = q.y + h / 2, mid = (x1 + x2) / 2;
    svg.append(svgNode("path", { class: "edge", d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`,
      "marker-end": "url(#arrow)" }));
  }
  for (const n of graph.nodes) {
    const p = pos[n.id];
    const g = svgNode("g", { class: "node" + (n.parameter ? " parameter" : "") });
    const rx = n.kind === "input" ? 2 : h / 2;
    g.append(svgNode("rect", { x: p.x, y: p.y, width: p.w, height: h, rx, ry: rx }));
    const text = svgNode("text", { x: p.x + p.w / 2, y: p.y + h / 2 + 4, "text-anchor": "middle" });
    text.textContent = n.short;
    const title = svgNode("title", {});
    title.textContent = n.label;
    g.append(title, text);
    svg.append(g);
  }
  box.append(svg);
}

// ------------------------------------------------------------------ links and examples

function updateLink(req) {
  const params = new URLSearchParams();
  params.set("program", req.program);
  if (req.wrt.length) params.set("wrt", req.wrt.join(","));
  params.set("mode", req.mode);
  params.set("order", String(req.order));
  if (req.backend !== "numpy") params.set("backend", req.backend);
  history.replaceState(null, "", "?" + params.toString());
}

async function copyText(text, button) {
  const done = () => { const old = button.textContent; button.textContent = "Copied"; setTimeout(() => { button.textContent = old; }, 1200); };
  try { await navigator.clipboard.writeText(text); done(); return; } catch (err) { /* fall back below */ }
  const area = document.createElement("textarea");
  area.value = text;
  document.body.append(area);
  area.select();
  try { document.execCommand("copy"); done(); } finally { area.remove(); }
}

function applyMode() {
  const mode = modeField.value;
  if (mode === "hessian") orderField.value = "2";
  if (mode === "grad") orderField.value = "1";
  orderField.disabled = mode !== "diff";
}

function load(fields, compute) {
  setProgram(fields.program || "");
  wrtField.value = (fields.wrt || []).join(" ");
  wrtTouched = Boolean(fields.wrt && fields.wrt.length);
  modeField.value = ["diff", "grad", "hessian"].includes(fields.mode) ? fields.mode : "diff";
  orderField.value = String(fields.order || 1);
  if (fields.backend && [...backendField.options].some((o) => o.value === fields.backend)) backendField.value = fields.backend;
  applyMode();
  clearError();
  if (compute) derive(); else scheduleParse();
}

async function loadExamples() {
  try {
    const response = await fetch("/api/examples");
    examples = await response.json();
  } catch (err) { examples = []; }
  const menu = $("examples");
  examples.forEach((ex, i) => { const o = node("option", "", ex.name); o.value = String(i); menu.append(o); });
}

async function start() {
  editor.addEventListener("input", () => {
    $("results").classList.add("stale");  // until Derive: these are the results of the text before
    if (errorMark) { errorMark = null; errorBox.hidden = true; }
    renderBackdrop();
    scheduleParse();
  });
  editor.addEventListener("scroll", syncScroll);
  editor.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); derive(); } });
  wrtField.addEventListener("input", () => { wrtTouched = wrtField.value.trim() !== ""; });
  wrtField.addEventListener("keydown", (e) => { if (e.key === "Enter") derive(); });
  modeField.addEventListener("change", applyMode);
  $("go").addEventListener("click", derive);
  $("share").addEventListener("click", () => { updateLink(request()); copyText(location.href, $("share")); });
  $("copy-code").addEventListener("click", () => copyText($("code").textContent, $("copy-code")));
  $("examples").addEventListener("change", (e) => {
    const ex = examples[Number(e.target.value)];
    if (ex) load(ex, true);
  });
  const examplesLoaded = loadExamples();
  const params = new URLSearchParams(location.search);
  if (params.has("program")) {
    const wrt = (params.get("wrt") || "").split(/[\s,]+/).filter(Boolean);
    load({ program: params.get("program"), wrt, mode: params.get("mode") || "diff",
      order: parseInt(params.get("order") || "1", 10) || 1, backend: params.get("backend") }, true);
  } else {
    await examplesLoaded;
    if (examples.length) { $("examples").value = "0"; load(examples[0], true); }
  }
}

start();
