/* The attention explorer (workbench/gallery/explorer.py writes the page and inlines this script).
 *
 * Plain JavaScript, no library, no network: the overview and the tokens are in the page
 * (<script id="explorer-meta">), the patterns of each layer in explorer-data/<condition>-L<layer>.js,
 * which call SinkExplorer.receive(condition, layer, base64) when the page adds them as <script> tags
 * (that works from file://, where fetch() does not). Each payload is deflated little-endian uint8 or
 * uint16 codes, value = code / scale, ordered head, sequence, query, key (lower triangle on causal models).
 */
(function () {
  "use strict";

  const meta = JSON.parse(document.getElementById("explorer-meta").textContent);
  const storage = meta.storage;
  const model = meta.model;
  const P = meta.positions;
  const nSeq = meta.sequences.length;
  const H = model.n_heads;
  const L = model.n_layers;
  const causal = storage.layout === "lower-triangle";
  const cells = causal ? (P * (P + 1)) / 2 : P * P;
  const conditions = meta.conditions;
  const edited = conditions.indexOf("intervened") >= 0;
  const digits = storage.bits === 16 ? 4 : 3;
  const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  // ---------------------------------------------------------------------------------------------
  // colour maps: viridis for attention, a blue-white-red diverging map for differences
  // ---------------------------------------------------------------------------------------------
  const VIRIDIS = ["#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c", "#22a884", "#44bf70",
    "#7ad151", "#bddf26", "#fde725"].map(hex);
  const DIVERGING = ["#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b"].map(hex);

  function hex(text) {
    return [1, 3, 5].map(function (i) { return parseInt(text.slice(i, i + 2), 16); });
  }

  function ramp(stops, t) {
    t = Math.min(1, Math.max(0, t));
    const x = t * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const f = x - i;
    return [0, 1, 2].map(function (c) { return Math.round(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * f); });
  }

  function attentionColour(value) {
    return ramp(VIRIDIS, state.sqrt ? Math.sqrt(Math.max(0, value)) : value);
  }

  function differenceColour(value, scale) {
    return ramp(DIVERGING, 0.5 + 0.5 * value / scale);
  }

  function css(rgb, alpha) {
    return alpha === undefined ? "rgb(" + rgb.join(",") + ")" : "rgba(" + rgb.join(",") + "," + alpha + ")";
  }

  function fmt(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "n/a";
    const text = value.toFixed(digits);
    return Number(text) === 0 ? (0).toFixed(digits) : text;  // no "-0.000"
  }

  function fmtGrid(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "n/a";
    const text = value.toFixed(4);
    return Number(text) === 0 ? "0.0000" : text;
  }

  function shown(token) {
    return token.replace(/\n/g, "⏎").replace(/\t/g, "⇥").replace(/ /g, "·") || "∅";
  }

  // ---------------------------------------------------------------------------------------------
  // state
  // ---------------------------------------------------------------------------------------------
  const state = { layer: 0, head: 0, sequence: 0, q: Math.min(P - 1, 1), k: 0, query: 0, sqrt: false,
    loaded: {}, raw: {}, waiting: {} };
  conditions.forEach(function (c) { state.loaded[c] = {}; state.raw[c] = {}; state.waiting[c] = {}; });
  (function strongestHead() {  // open on the head with the most sink attention
    let best = -1;
    meta.grid.baseline.forEach(function (row, l) {
      row.forEach(function (v, h) { if (v !== null && v > best) { best = v; state.layer = l; state.head = h; } });
    });
  })();

  // ---------------------------------------------------------------------------------------------
  // data: one layer at a time, through <script> tags
  // ---------------------------------------------------------------------------------------------
  function decodeBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async function inflate(bytes) {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser has no DecompressionStream (Chromium 80+, Firefox 113+ and Safari 16.4+ do)");
    }
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  function codes(bytes) {
    if (storage.bits === 8) return bytes;
    if (littleEndian) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Uint16Array(bytes.byteLength / 2);
    for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true);
    return out;
  }

  function receive(condition, layer, payload) {
    const slot = state.waiting[condition][layer];
    inflate(decodeBase64(payload)).then(function (bytes) {
      const values = codes(bytes);
      if (values.length < H * nSeq * cells) {
        throw new Error("layer " + layer + " holds " + values.length + " values, expected " + H * nSeq * cells);
      }
      state.raw[condition][layer] = values;
      if (slot) slot.resolve(values);
    }).catch(function (error) {
      if (slot) slot.reject(error);
    });
  }

  function loadLayer(condition, layer) {
    if (state.raw[condition][layer]) return Promise.resolve(state.raw[condition][layer]);
    if (state.waiting[condition][layer]) return state.waiting[condition][layer].promise;
    const slot = {};
    slot.promise = new Promise(function (resolve, reject) { slot.resolve = resolve; slot.reject = reject; });
    state.waiting[condition][layer] = slot;
    const script = document.createElement("script");
    script.src = storage.files[condition][layer];
    script.onerror = function () {
      slot.reject(new Error("cannot read " + storage.files[condition][layer] + ": keep the " +
        "explorer-data folder next to the page"));
    };
    document.head.appendChild(script);
    return slot.promise;
  }

  /** Both conditions of one layer, read and decoded; the intervened codes are stored as their difference
   *  from the baseline's modulo 2^bits (zeros wherever the edit changes nothing), added back here once. */
  function ensureLayer(layer) {
    return Promise.all(conditions.map(function (c) { return loadLayer(c, layer); })).then(function () {
      if (state.loaded.baseline[layer]) return;
      const base = state.raw.baseline[layer];
      if (edited) {
        const wrapped = state.raw.intervened[layer];
        const out = new (storage.bits === 16 ? Uint16Array : Uint8Array)(wrapped.length);
        const mask = storage.scale;  // 2^bits - 1
        for (let i = 0; i < out.length; i++) out[i] = (base[i] + wrapped[i]) & mask;
        state.loaded.intervened[layer] = out;
      }
      state.loaded.baseline[layer] = base;
    });
  }

  function cellIndex(q, k) {
    return causal ? (q * (q + 1)) / 2 + k : q * P + k;
  }

  /** A[q, k] of the current head and sequence under `condition` (null where the key is masked). */
  function value(condition, q, k, layer, head, sequence) {
    if (causal && k > q) return null;
    const data = state.loaded[condition][layer === undefined ? state.layer : layer];
    if (!data) return null;
    const h = head === undefined ? state.head : head;
    const s = sequence === undefined ? state.sequence : sequence;
    return data[(h * nSeq + s) * cells + cellIndex(q, k)] / storage.scale;
  }

  function difference(q, k) {
    const a = value("baseline", q, k);
    const b = value("intervened", q, k);
    return a === null || b === null ? null : b - a;
  }

  // ---------------------------------------------------------------------------------------------
  // the page
  // ---------------------------------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

  const body = document.body;
  const header = el("header");
  header.appendChild(el("h1", { text: meta.title }));
  const explorerProvenance = meta.provenance.explorer || {};
  header.appendChild(el("p", { class: "sub", text: [
    model.name + " (" + model.family + ", " + L + " layers × " + H + " heads)",
    (explorerProvenance.data_source || "data") + ": " + nSeq + (model.is_image ? " images" : " sequences") +
      " × " + P + " positions",
    "sink: " + meta.grid.sink,
    edited ? "intervention: " + meta.labels.intervened : "no intervention",
  ].join(" · ") }));
  const notes = el("ul", { class: "notes" });
  meta.notes.forEach(function (note) { notes.appendChild(el("li", { text: note })); });
  header.appendChild(notes);
  const keys = el("p", { class: "keys" });
  keys.innerHTML = "Keys: on the grid <kbd>←</kbd><kbd>→</kbd> head, <kbd>↑</kbd><kbd>↓</kbd> layer; on a heatmap " +
    "the arrows move the cursor (query ↓, key →); <kbd>n</kbd>/<kbd>p</kbd> next/previous sequence; " +
    "<kbd>[</kbd>/<kbd>]</kbd> previous/next head; <kbd>s</kbd> square-root colour scale. " +
    "Pointer: click a grid cell to open its head; hover a heatmap for the value under the pointer" +
    (model.is_image ? "; click a patch of the image to make it the query." : ".");
  header.appendChild(keys);
  const status = el("p", { id: "status", text: "loading…" });
  header.appendChild(status);
  body.appendChild(header);
  const main = el("main");
  body.appendChild(main);
  const tooltip = el("div", { id: "tooltip" });
  body.appendChild(tooltip);

  function setStatus(text, error) {
    status.textContent = text;
    status.className = error ? "error" : "";
  }

  function canvasOf(width, height, attrs) {
    const canvas = el("canvas", attrs);
    sizeCanvas(canvas, width, height);
    return canvas;
  }

  function sizeCanvas(canvas, width, height) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }

  function pointer(canvas, event) {
    const box = canvas.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  }

  function showTooltip(event, text) {
    tooltip.textContent = text;
    tooltip.style.display = "block";
    tooltip.style.left = Math.min(window.innerWidth - 260, event.clientX + 14) + "px";
    tooltip.style.top = (event.clientY + 16) + "px";
  }

  function hideTooltip() { tooltip.style.display = "none"; }

  // ---------------------------------------------------------------------------------------------
  // overview: the layer x head sink grid (baseline, intervened, difference)
  // ---------------------------------------------------------------------------------------------
  const overview = el("section", { id: "overview" });
  overview.appendChild(el("h2", { text: "Sink attention per head (" + meta.grid.metric + ")" }));
  const gridRow = el("div", { class: "row" });
  overview.appendChild(gridRow);
  const gridReadout = el("p", { class: "readout", id: "grid-readout" });
  overview.appendChild(gridReadout);
  main.appendChild(overview);

  const gridCell = Math.max(8, Math.min(22, Math.floor(380 / L), Math.floor((edited ? 110 : 300) / H)));
  const gridLeft = 30, gridTop = 18;
  const gridKinds = edited ? ["baseline", "intervened", "difference"] : ["baseline"];
  let gridDiffScale = 1e-9;
  if (edited) {
    meta.grid.baseline.forEach(function (row, l) {
      row.forEach(function (v, h) {
        const w = meta.grid.intervened[l][h];
        if (v !== null && w !== null) gridDiffScale = Math.max(gridDiffScale, Math.abs(w - v));
      });
    });
  }

  function gridValue(kind, l, h) {
    if (kind === "difference") {
      const a = meta.grid.baseline[l][h], b = meta.grid.intervened[l][h];
      return a === null || b === null ? null : b - a;
    }
    return meta.grid[kind][l][h];
  }

  const grids = gridKinds.map(function (kind) {
    const width = gridLeft + H * gridCell + 2, height = gridTop + L * gridCell + 2;
    const canvas = canvasOf(width, height, { class: "grid", id: "grid-" + kind, tabindex: "0", role: "grid",
      "aria-label": "sink attention per layer and head, " + kind + "; arrows choose a head",
      "data-kind": kind, "data-cell": String(gridCell), "data-x0": String(gridLeft), "data-y0": String(gridTop) });
    const caption = kind === "difference" ? "difference (intervened − baseline)" :
      kind === "intervened" ? "after " + meta.labels.intervened : "baseline";
    gridRow.appendChild(el("figure", {}, [el("figcaption", { text: caption }), canvas]));
    canvas.addEventListener("mousemove", function (event) {
      const at = gridAt(canvas, event);
      if (!at) { hideTooltip(); return; }
      showGridReadout(at.l, at.h);
      showTooltip(event, "L" + at.l + " H" + at.h + "  " + fmtGrid(gridValue(kind, at.l, at.h)));
    });
    canvas.addEventListener("mouseleave", function () { hideTooltip(); showGridReadout(state.layer, state.head); });
    canvas.addEventListener("click", function (event) {
      const at = gridAt(canvas, event);
      if (at) selectHead(at.l, at.h);
      canvas.focus();
    });
    canvas.addEventListener("keydown", function (event) {
      const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0],
        PageUp: [-5, 0], PageDown: [5, 0] };
      if (!moves[event.key]) return;
      event.preventDefault();
      const l = Math.max(0, Math.min(L - 1, state.layer + moves[event.key][0]));
      const h = Math.max(0, Math.min(H - 1, state.head + moves[event.key][1]));
      selectHead(l, h);
    });
    return { kind: kind, canvas: canvas };
  });

  function gridAt(canvas, event) {
    const at = pointer(canvas, event);
    const h = Math.floor((at.x - gridLeft) / gridCell), l = Math.floor((at.y - gridTop) / gridCell);
    return h >= 0 && h < H && l >= 0 && l < L ? { l: l, h: h } : null;
  }

  function drawGrids() {
    grids.forEach(function (grid) {
      const ctx = grid.canvas.getContext("2d");
      const width = gridLeft + H * gridCell + 2, height = gridTop + L * gridCell + 2;
      ctx.clearRect(0, 0, width, height);
      ctx.font = "10px system-ui, sans-serif";
      ctx.fillStyle = "#5f6368";
      ctx.textAlign = "center";
      ctx.textBaseline = "alphabetic";
      const headStep = gridCell >= 14 ? 1 : Math.ceil(14 / gridCell);
      for (let h = 0; h < H; h += headStep) ctx.fillText(String(h), gridLeft + (h + 0.5) * gridCell, gridTop - 5);
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      const layerStep = gridCell >= 11 ? 1 : Math.ceil(11 / gridCell);
      for (let l = 0; l < L; l += layerStep) ctx.fillText(String(l), gridLeft - 5, gridTop + (l + 0.5) * gridCell);
      for (let l = 0; l < L; l++) {
        for (let h = 0; h < H; h++) {
          const v = gridValue(grid.kind, l, h);
          ctx.fillStyle = v === null ? "#e0e0e0" :
            grid.kind === "difference" ? css(differenceColour(v, gridDiffScale)) : css(ramp(VIRIDIS, v));
          ctx.fillRect(gridLeft + h * gridCell, gridTop + l * gridCell, gridCell - 1, gridCell - 1);
        }
      }
      const x = gridLeft + state.head * gridCell, y = gridTop + state.layer * gridCell;
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#000";
      ctx.strokeRect(x - 1, y - 1, gridCell + 1, gridCell + 1);
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1;
      ctx.strokeRect(x + 0.5, y + 0.5, gridCell - 2, gridCell - 2);
      grid.canvas.dataset.layer = String(state.layer);
      grid.canvas.dataset.head = String(state.head);
    });
  }

  function showGridReadout(l, h) {
    gridReadout.textContent = "";
    gridReadout.appendChild(el("b", { text: "L" + l + " H" + h }));
    gridKinds.forEach(function (kind) {
      gridReadout.appendChild(document.createTextNode("  " + (kind === "difference" ? "Δ" : kind) + " "));
      gridReadout.appendChild(el("span", { id: "grid-value-" + kind, text: fmtGrid(gridValue(kind, l, h)) }));
    });
    gridReadout.dataset.layer = String(l);
    gridReadout.dataset.head = String(h);
  }

  const gridLegend = el("div", { class: "legend" });
  gridLegend.appendChild(legendBar(VIRIDIS, "0", "1", "sink attention"));
  if (edited) gridLegend.appendChild(legendBar(DIVERGING, fmtGrid(-gridDiffScale), fmtGrid(gridDiffScale), "Δ"));
  overview.appendChild(gridLegend);

  function legendBar(stops, low, high, label) {
    const span = el("span");
    const bar = canvasOf(90, 10, { "aria-hidden": "true" });
    const ctx = bar.getContext("2d");
    for (let i = 0; i < 90; i++) { ctx.fillStyle = css(ramp(stops, i / 89)); ctx.fillRect(i, 0, 1, 10); }
    span.appendChild(document.createTextNode(label + " " + low + " "));
    span.appendChild(bar);
    span.appendChild(document.createTextNode(" " + high));
    return span;
  }

  // ---------------------------------------------------------------------------------------------
  // the head: heatmaps of A (baseline, intervened) and their difference
  // ---------------------------------------------------------------------------------------------
  const headSection = el("section", { id: "head" });
  const headTitle = el("h2", { id: "head-title" });
  headSection.appendChild(headTitle);
  const controls = el("div", { class: "controls" });
  const sequenceSelect = el("select", { id: "sequence", "aria-label": "sequence" });
  meta.sequences.forEach(function (sequence, i) {
    sequenceSelect.appendChild(el("option", { value: String(i), text: sequence.label }));
  });
  controls.appendChild(el("label", {}, [document.createTextNode(model.is_image ? "Image " : "Sequence "),
    sequenceSelect]));
  const sqrtBox = el("input", { type: "checkbox", id: "sqrt-scale" });
  controls.appendChild(el("label", {}, [sqrtBox, document.createTextNode(" √ colour scale (shows small values)")]));
  headSection.appendChild(controls);
  const panelRow = el("div", { class: "row" });
  headSection.appendChild(panelRow);
  const cellReadout = el("p", { class: "readout", id: "cell-readout" });
  headSection.appendChild(cellReadout);
  const headLegend = el("div", { class: "legend" });
  headSection.appendChild(headLegend);
  main.appendChild(headSection);

  const panelKinds = edited ? ["baseline", "intervened", "difference"] : ["baseline"];
  if (edited) body.classList.add("edited");  // three heatmaps side by side: the head takes the whole width
  const layout = (function () {
    const width = Math.max(300, panelRow.clientWidth || window.innerWidth - 520);
    const available = (width - 14 * (panelKinds.length - 1)) / panelKinds.length;
    const guess = Math.max(3, Math.min(22, Math.floor((available - 60) / P)));
    const font = Math.max(7, Math.min(11, guess));
    const measure = document.createElement("canvas").getContext("2d");
    measure.font = font + "px system-ui, sans-serif";
    let widest = 0;
    meta.sequences.forEach(function (s) {
      s.tokens.forEach(function (t) { widest = Math.max(widest, measure.measureText(shown(t)).width); });
    });
    const margin = Math.ceil(Math.min(96, widest + 12));
    const cell = Math.max(3, Math.min(22, Math.floor((available - margin - 6) / P)));
    return { cell: cell, font: font, left: margin, top: margin, labelStep: cell >= 7 ? 1 : Math.ceil(7 / cell) };
  })();

  const panels = panelKinds.map(function (kind) {
    const size = layout.left + P * layout.cell + 4;
    const canvas = canvasOf(size, layout.top + P * layout.cell + 4, { class: "heatmap", id: "heatmap-" + kind,
      tabindex: "0", "aria-label": "attention pattern, " + kind + "; arrows move the cursor",
      "data-kind": kind, "data-cell": String(layout.cell), "data-x0": String(layout.left),
      "data-y0": String(layout.top) });
    const caption = kind === "difference" ? "difference (intervened − baseline)" :
      kind === "intervened" ? "after " + meta.labels.intervened : "baseline";
    panelRow.appendChild(el("figure", {}, [el("figcaption", { text: caption }), canvas]));
    canvas.addEventListener("mousemove", function (event) {
      const at = heatAt(canvas, event);
      if (!at) { hideTooltip(); return; }
      state.q = at.q; state.k = at.k;
      drawHeatmaps();
      showTooltip(event, cellText(at.q, at.k, true));
    });
    canvas.addEventListener("mouseleave", hideTooltip);
    canvas.addEventListener("click", function (event) {
      const at = heatAt(canvas, event);
      if (at) { state.q = at.q; state.k = at.k; drawHeatmaps(); }
      canvas.focus();
    });
    canvas.addEventListener("keydown", function (event) {
      const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0],
        Home: [0, -P], End: [0, P] };
      if (!moves[event.key]) return;
      event.preventDefault();
      state.q = Math.max(0, Math.min(P - 1, state.q + moves[event.key][0]));
      state.k = Math.max(0, Math.min(causal ? state.q : P - 1, state.k + moves[event.key][1]));
      drawHeatmaps();
    });
    return { kind: kind, canvas: canvas, scratch: document.createElement("canvas") };
  });

  function heatAt(canvas, event) {
    const at = pointer(canvas, event);
    const k = Math.floor((at.x - layout.left) / layout.cell), q = Math.floor((at.y - layout.top) / layout.cell);
    return q >= 0 && q < P && k >= 0 && k < P ? { q: q, k: k } : null;
  }

  function cellText(q, k, short) {
    const tokens = meta.sequences[state.sequence].tokens;
    const where = "q " + q + " " + JSON.stringify(tokens[q]) + " → k " + k + " " + JSON.stringify(tokens[k]);
    if (causal && k > q) return where + (short ? "\nmasked (a query sees no later key)" : "");
    if (!short) return where;
    const parts = [where];
    if (edited) {
      parts.push("baseline " + fmt(value("baseline", q, k)) + "   intervened " + fmt(value("intervened", q, k)) +
        "   Δ " + fmt(difference(q, k)));
    } else {
      parts.push("A = " + fmt(value("baseline", q, k)));
    }
    return parts.join("\n");
  }

  function showCellReadout() {
    const q = state.q, k = state.k;
    cellReadout.textContent = "";
    cellReadout.appendChild(el("b", { text: cellText(q, k, false) }));
    const masked = causal && k > q;
    panelKinds.forEach(function (kind) {
      const v = masked ? null : kind === "difference" ? difference(q, k) : value(kind, q, k);
      cellReadout.appendChild(document.createTextNode("   " + (kind === "difference" ? "Δ" : kind) + " "));
      cellReadout.appendChild(el("span", { id: "value-" + kind, text: masked ? "masked" : fmt(v) }));
    });
    if (meta.sequences[state.sequence].sink.indexOf(k) >= 0) {
      cellReadout.appendChild(el("span", { class: "sinkmark", text: "   (sink key)" }));
    }
    cellReadout.dataset.q = String(q);
    cellReadout.dataset.k = String(k);
  }

  function headDiffScale() {
    let scale = 1e-9;
    if (!edited) return scale;
    for (let q = 0; q < P; q++) {
      for (let k = 0; k <= (causal ? q : P - 1); k++) scale = Math.max(scale, Math.abs(difference(q, k)));
    }
    return scale;
  }

  function drawHeatmaps() {
    const sequence = meta.sequences[state.sequence];
    const scale = headDiffScale();
    panels.forEach(function (panel) {
      const ctx = panel.canvas.getContext("2d");
      const c = layout.cell, x0 = layout.left, y0 = layout.top;
      ctx.clearRect(0, 0, x0 + P * c + 4, y0 + P * c + 4);
      // the matrix, one pixel per cell, scaled up without smoothing
      panel.scratch.width = P; panel.scratch.height = P;
      const small = panel.scratch.getContext("2d");
      const image = small.createImageData(P, P);
      for (let q = 0; q < P; q++) {
        for (let k = 0; k < P; k++) {
          let rgb;
          if (causal && k > q) rgb = [226, 226, 226];
          else if (panel.kind === "difference") rgb = differenceColour(difference(q, k), scale);
          else rgb = attentionColour(value(panel.kind, q, k));
          const i = 4 * (q * P + k);
          image.data[i] = rgb[0]; image.data[i + 1] = rgb[1]; image.data[i + 2] = rgb[2]; image.data[i + 3] = 255;
        }
      }
      small.putImageData(image, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(panel.scratch, x0, y0, P * c, P * c);
      // token strings on both axes: queries down the left, keys across the top (rotated)
      ctx.font = layout.font + "px system-ui, sans-serif";
      ctx.fillStyle = "#333";
      ctx.textBaseline = "middle";
      for (let i = 0; i < P; i += layout.labelStep) {
        const label = clip(ctx, shown(sequence.tokens[i]), x0 - 6);
        const isSink = sequence.sink.indexOf(i) >= 0;
        ctx.fillStyle = isSink ? "#d62728" : "#333";
        ctx.textAlign = "right";
        ctx.fillText(label, x0 - 4, y0 + (i + 0.5) * c);
        ctx.save();
        ctx.translate(x0 + (i + 0.5) * c, y0 - 4);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(clip(ctx, shown(sequence.tokens[i]), y0 - 6), 0, 0);
        ctx.restore();
      }
      // the sink keys: outlined columns
      ctx.strokeStyle = "#d62728";
      ctx.lineWidth = 2;
      sequence.sink.forEach(function (k) {
        if (k < P) ctx.strokeRect(x0 + k * c - 1, y0 - 1, c + 2, P * c + 2);
      });
      // the cursor: the cell under the pointer or the keyboard's
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#000";
      ctx.strokeRect(x0 + state.k * c - 1, y0 + state.q * c - 1, c + 2, c + 2);
      if (c >= 6) {
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1;
        ctx.strokeRect(x0 + state.k * c + 0.5, y0 + state.q * c + 0.5, c - 1, c - 1);
      }
      panel.canvas.dataset.layer = String(state.layer);
      panel.canvas.dataset.head = String(state.head);
      panel.canvas.dataset.sequence = String(state.sequence);
    });
    headLegend.textContent = "";
    headLegend.appendChild(legendBar(VIRIDIS, "0", "1", state.sqrt ? "A (√ scale)" : "A"));
    if (edited && scale > 1e-9) headLegend.appendChild(legendBar(DIVERGING, fmt(-scale), fmt(scale), "Δ"));
    else if (edited) headLegend.appendChild(el("span", { text: "Δ = 0 everywhere: the intervention leaves this head " +
      "and sequence unchanged" }));
    headLegend.appendChild(el("span", { class: "sinkmark", text: "▌ sink key column" }));
    headLegend.appendChild(el("span", { text: "rows: queries · columns: keys" + (causal ? " · grey: masked" : "") }));
    showCellReadout();
    drawOverlays();
  }

  function clip(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    while (text.length > 1 && ctx.measureText(text + "…").width > width) text = text.slice(0, -1);
    return text + "…";
  }

  // ---------------------------------------------------------------------------------------------
  // image models: the attention of [CLS] (or a chosen patch) laid over the image
  // ---------------------------------------------------------------------------------------------
  const image = meta.image;
  let overlays = [];
  let querySelect = null;
  const overlayReadout = el("p", { class: "readout", id: "overlay-readout" });
  if (image) {
    const section = el("section", { id: "overlay" });
    section.appendChild(el("h2", { text: "Attention laid over the image" }));
    const row = el("div", { class: "controls" });
    querySelect = el("select", { id: "query", "aria-label": "query position" });
    meta.sequences[0].tokens.forEach(function (token, position) {
      querySelect.appendChild(el("option", { value: String(position), text: position + ": " + token }));
    });
    row.appendChild(el("label", {}, [document.createTextNode("Query "), querySelect]));
    section.appendChild(row);
    const figures = el("div", { class: "row" });
    section.appendChild(figures);
    section.appendChild(overlayReadout);
    main.appendChild(section);
    const side = Math.max(160, Math.min(300, Math.floor(image.cols * 24)));
    overlays = panelKinds.map(function (kind) {
      const canvas = canvasOf(side, side, { class: "overlay", id: "overlay-" + kind, tabindex: "0",
        "aria-label": "attention of the query over the image patches, " + kind + "; arrows move the query patch",
        "data-kind": kind, "data-side": String(side) });
      const caption = kind === "difference" ? "difference (intervened − baseline)" :
        kind === "intervened" ? "after " + meta.labels.intervened : "baseline";
      figures.appendChild(el("figure", {}, [el("figcaption", { text: caption }), canvas]));
      canvas.addEventListener("mousemove", function (event) {
        const patch = patchAt(canvas, event);
        if (patch === null) { hideTooltip(); return; }
        showOverlayReadout(patch);
        showTooltip(event, "patch r" + Math.floor(patch / image.cols) + "c" + (patch % image.cols) + "  " +
          fmt(kind === "difference" ? overlayDifference(patch) : value(kind, state.query, image.n_prefix + patch)));
      });
      canvas.addEventListener("mouseleave", hideTooltip);
      canvas.addEventListener("click", function (event) {
        const patch = patchAt(canvas, event);
        if (patch !== null) setQuery(image.n_prefix + patch);
        canvas.focus();
      });
      canvas.addEventListener("keydown", function (event) {
        const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -image.cols, ArrowDown: image.cols };
        if (moves[event.key] === undefined) return;
        event.preventDefault();
        const patches = image.rows * image.cols;
        let patch = state.query - image.n_prefix;
        patch = patch < 0 || patch >= patches ? 0 : Math.max(0, Math.min(patches - 1, patch + moves[event.key]));
        setQuery(image.n_prefix + patch);
      });
      return { kind: kind, canvas: canvas, side: side, picture: document.createElement("canvas") };
    });
    querySelect.addEventListener("change", function () { setQuery(Number(querySelect.value)); });
  }

  function setQuery(position) {
    state.query = position;
    if (querySelect) querySelect.value = String(position);
    drawOverlays();
  }

  function patchAt(canvas, event) {
    const at = pointer(canvas, event);
    const side = Number(canvas.dataset.side);
    const c = Math.floor(at.x / (side / image.cols)), r = Math.floor(at.y / (side / image.rows));
    return r >= 0 && r < image.rows && c >= 0 && c < image.cols ? r * image.cols + c : null;
  }

  function overlayDifference(patch) {
    const a = value("baseline", state.query, image.n_prefix + patch);
    const b = value("intervened", state.query, image.n_prefix + patch);
    return a === null || b === null ? null : b - a;
  }

  function showOverlayReadout(patch) {
    overlayReadout.textContent = "";
    const tokens = meta.sequences[state.sequence].tokens;
    overlayReadout.appendChild(el("b", { text: "query " + JSON.stringify(tokens[state.query]) + " → patch r" +
      Math.floor(patch / image.cols) + "c" + (patch % image.cols) }));
    panelKinds.forEach(function (kind) {
      const v = kind === "difference" ? overlayDifference(patch) : value(kind, state.query, image.n_prefix + patch);
      overlayReadout.appendChild(document.createTextNode("   " + (kind === "difference" ? "Δ" : kind) + " "));
      overlayReadout.appendChild(el("span", { id: "overlay-value-" + kind, text: fmt(v) }));
    });
  }

  function drawOverlays() {
    if (!image || !state.loaded.baseline[state.layer]) return;
    const patches = image.rows * image.cols;
    let top = 1e-9, diffTop = 1e-9;
    for (let p = 0; p < patches; p++) {
      conditions.forEach(function (c) { top = Math.max(top, value(c, state.query, image.n_prefix + p)); });
      if (edited) diffTop = Math.max(diffTop, Math.abs(overlayDifference(p)));
    }
    overlays.forEach(function (overlay) {
      const ctx = overlay.canvas.getContext("2d");
      const side = overlay.side;
      overlay.picture.width = image.width; overlay.picture.height = image.height;
      const small = overlay.picture.getContext("2d");
      const rgb = decodeBase64(image.pixels[state.sequence]);
      const data = small.createImageData(image.width, image.height);
      for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
        data.data[j] = rgb[i]; data.data[j + 1] = rgb[i + 1]; data.data[j + 2] = rgb[i + 2]; data.data[j + 3] = 255;
      }
      small.putImageData(data, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.clearRect(0, 0, side, side);
      ctx.drawImage(overlay.picture, 0, 0, side, side);
      const w = side / image.cols, h = side / image.rows;
      for (let p = 0; p < patches; p++) {
        const r = Math.floor(p / image.cols), c = p % image.cols;
        if (overlay.kind === "difference") {
          ctx.fillStyle = css(differenceColour(overlayDifference(p), diffTop), 0.7);
        } else {
          const v = value(overlay.kind, state.query, image.n_prefix + p) / top;
          ctx.fillStyle = css(attentionColour(v), 0.1 + 0.5 * v);
        }
        ctx.fillRect(c * w, r * h, w, h);
      }
      const queryPatch = state.query - image.n_prefix;
      if (queryPatch >= 0 && queryPatch < patches) {
        ctx.strokeStyle = "#d62728";
        ctx.lineWidth = 2;
        ctx.strokeRect((queryPatch % image.cols) * w + 1, Math.floor(queryPatch / image.cols) * h + 1, w - 2, h - 2);
      }
      overlay.canvas.dataset.query = String(state.query);
      overlay.canvas.dataset.layer = String(state.layer);
      overlay.canvas.dataset.head = String(state.head);
    });
    const tokens = meta.sequences[state.sequence].tokens;
    const inside = state.query - image.n_prefix;
    overlayReadout.dataset.query = String(state.query);
    if (!overlayReadout.textContent) {
      overlayReadout.textContent = "query " + JSON.stringify(tokens[state.query]) + ": colour = attention / " +
        fmt(top) + " (the largest over the patches)" + (inside >= 0 && inside < patches ? "; red: the query" : "");
    }
  }

  // ---------------------------------------------------------------------------------------------
  // selection
  // ---------------------------------------------------------------------------------------------
  let generation = 0;

  function selectHead(layer, head) {
    state.layer = layer;
    state.head = head;
    drawGrids();
    showGridReadout(layer, head);
    headTitle.textContent = "Layer " + layer + " · head " + head + " — sink attention " +
      fmtGrid(meta.grid.baseline[layer][head]) +
      (edited ? " → " + fmtGrid(meta.grid.intervened[layer][head]) + " after the intervention" : "");
    const mine = ++generation;
    body.dataset.state = "loading";
    setStatus("loading layer " + layer + "…");
    ensureLayer(layer).then(function () {
      if (mine !== generation) return;
      drawHeatmaps();
      const loaded = Object.keys(state.loaded.baseline).length;
      setStatus("layer " + layer + " loaded (" + loaded + " of " + L + " layers in memory; each loads when opened)");
      body.dataset.state = "ready";
    }).catch(function (error) {
      setStatus("error: " + error.message, true);
      body.dataset.state = "error";
    });
  }

  function selectSequence(index) {
    state.sequence = Math.max(0, Math.min(nSeq - 1, index));
    sequenceSelect.value = String(state.sequence);
    if (querySelect) querySelect.value = String(state.query);
    overlayReadout.textContent = "";
    if (state.loaded.baseline[state.layer]) drawHeatmaps();
  }

  sequenceSelect.addEventListener("change", function () { selectSequence(Number(sequenceSelect.value)); });
  sqrtBox.addEventListener("change", function () { state.sqrt = sqrtBox.checked; drawHeatmaps(); });
  document.addEventListener("keydown", function (event) {
    const tag = (event.target && event.target.tagName) || "";
    if (tag === "SELECT" || tag === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
    const linear = state.layer * H + state.head;
    if (event.key === "n") selectSequence(state.sequence + 1);
    else if (event.key === "p") selectSequence(state.sequence - 1);
    else if (event.key === "]" && linear < L * H - 1) selectHead(Math.floor((linear + 1) / H), (linear + 1) % H);
    else if (event.key === "[" && linear > 0) selectHead(Math.floor((linear - 1) / H), (linear - 1) % H);
    else if (event.key === "s") { sqrtBox.checked = !sqrtBox.checked; state.sqrt = sqrtBox.checked; drawHeatmaps(); }
  });

  // provenance: what ran, on what, with which code
  const details = el("details");
  details.appendChild(el("summary", { text: "Provenance (model, data, intervention, code, packages)" }));
  details.appendChild(el("pre", { id: "provenance", text: JSON.stringify(meta.provenance, null, 2) }));
  body.appendChild(details);

  window.SinkExplorer = { meta: meta, state: state, receive: receive, value: value, selectHead: selectHead,
    selectSequence: selectSequence };
  selectHead(state.layer, state.head);
})();
