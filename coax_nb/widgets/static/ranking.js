/* Built by widgets/build.py from palette.json, common.js, ranking.js: edit those, then rebuild. */
const PALETTE = {"sequential": [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], "diverging": [[0, 114, 178], [247, 247, 247], [213, 94, 0]], "lines": ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#7F7F7F"], "nan": "#D0D0D0", "primary": "#000000", "truth": "#D55E00", "point": "#56B4E9"};

// Shared helpers of every component. widgets/build.py inlines this module (and the
// palette) into each component's bundle: anywidget loads one self-contained module.

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}, parent = null) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function htmlEl(tag, attrs = {}, parent = null, text = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

// colour-blind safe scales from palette.json, the file coax_nb.plots draws the PNGs with:
// viridis stops (sequential), blue-white-vermillion (diverging), Okabe-Ito lines
const LINE_COLORS = PALETTE.lines;

function lerpStops(stops, t) {
  t = Math.min(1, Math.max(0, t));
  const x = t * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// A scale for the finite values: diverging around 0 when values have both signs.
function makeScale(values) {
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  if (finite.length === 0) return { color: () => "var(--coax-nan)", lo: 0, hi: 0, diverging: false };
  let lo = Math.min(...finite), hi = Math.max(...finite);
  const diverging = lo < 0 && hi > 0;
  if (diverging) {
    const m = Math.max(-lo, hi);
    lo = -m; hi = m;
  }
  const span = hi - lo || 1;
  const color = (v) => (v === null || !Number.isFinite(v))
    ? "var(--coax-nan)"
    : lerpStops(diverging ? PALETTE.diverging : PALETTE.sequential, (v - lo) / span);
  return { color, lo, hi, diverging };
}

function fmt(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (Number.isInteger(v) && Math.abs(v) < 1e4) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(2);
  return v.toFixed(a < 1 ? 4 : 3);
}

// One line under a view saying what its numbers are (ablation, units, prompts, S), from
// the component's `caption` trait; kept current when the trait changes.
function captionLine(root, model) {
  const line = htmlEl("div", { class: "coax-caption" }, root);
  const show = () => { line.textContent = model.get("caption") || ""; line.style.display = line.textContent ? "" : "none"; };
  model.on("change:caption", show);
  show();
  return line;
}

function legend(parent, scale, label) {
  const box = htmlEl("div", { class: "coax-legend" }, parent);
  htmlEl("span", { class: "coax-legend-lo" }, box, fmt(scale.lo));
  const bar = htmlEl("span", { class: "coax-legend-bar" }, box);
  const stops = [];
  for (let i = 0; i <= 10; i++) stops.push(scale.color(scale.lo + (i / 10) * (scale.hi - scale.lo)));
  bar.style.background = `linear-gradient(to right, ${stops.join(",")})`;
  htmlEl("span", { class: "coax-legend-hi" }, box, fmt(scale.hi));
  htmlEl("span", { class: "coax-legend-label" }, box, label);
  return box;
}

// The tooltip is position: fixed at the pointer, so the notebook's output area (overflow
// hidden, often only as tall as a small model's map) cannot clip it. It stays inside the
// component's box when it fits there, else inside the viewport, flipping to the left of /
// above the pointer rather than running over an edge.
function tooltip(root) {
  const tip = htmlEl("div", { class: "coax-tooltip", role: "tooltip" }, root);
  tip.style.display = "none";
  const GAP = 12;
  return {
    el: tip,
    show(lines, evt) {
      tip.replaceChildren();
      for (const line of lines) htmlEl("div", {}, tip, line);
      tip.style.display = "block";
      const w = tip.offsetWidth, h = tip.offsetHeight;
      const vw = document.documentElement.clientWidth || window.innerWidth;
      const vh = document.documentElement.clientHeight || window.innerHeight;
      const r = root.getBoundingClientRect();
      const place = (p, size, lo, hi) => {
        let v = p + GAP;
        if (v + size > hi) v = p - GAP - size;  // flip to the other side of the pointer
        return Math.max(lo, Math.min(v, hi - size));
      };
      // bounds: the component's visible box when the tip fits in it, else the viewport
      const bx = [Math.max(0, r.left), Math.min(vw, r.right)], by = [Math.max(0, r.top), Math.min(vh, r.bottom)];
      const [x0, x1] = w <= bx[1] - bx[0] ? bx : [0, vw];
      const [y0, y1] = h <= by[1] - by[0] ? by : [0, vh];
      const left = place(evt.clientX, w, x0, x1), top = place(evt.clientY, h, y0, y1);
      tip.style.left = `${left}px`;
      tip.style.top = `${top}px`;
      // a transformed / contained ancestor makes "fixed" relative to itself: correct for it
      const got = tip.getBoundingClientRect();
      if (Math.abs(got.left - left) > 0.5 || Math.abs(got.top - top) > 0.5) {
        tip.style.left = `${2 * left - got.left}px`;
        tip.style.top = `${2 * top - got.top}px`;
      }
    },
    hide() { tip.style.display = "none"; },
  };
}

function localXY(root, evt) {
  const r = root.getBoundingClientRect();
  return [evt.clientX - r.left, evt.clientY - r.top];
}

function toggled(list, item) {
  return list.includes(item) ? list.filter((x) => x !== item) : [...list, item];
}

// heads are labelled the TransformerLens way, as in coax_nb.units
function unitName(layer, head) { return `L${layer}H${head}`; }

// RankingTable: sortable per-head table of scores; click a row to select the head.
// traits: n_heads, scores {name: [flat]}, sort_by, descending, primaries, truth, selected, max_rows

// compact cell numbers (3 significant digits, short exponents) keep the table narrow;
// the full value is the cell's title
function compact(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e4) return String(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(1).replace("e+", "e");
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function renderRankingTable({ model, el }) {
  const root = htmlEl("div", { class: "coax-root coax-ranking" }, el);
  const tableBox = htmlEl("div", { class: "coax-table-box" }, root);
  captionLine(root, model);

  function draw() {
    const H = model.get("n_heads"), scores = model.get("scores"), names = Object.keys(scores);
    const primaries = model.get("primaries"), truth = model.get("truth"), selected = model.get("selected");
    const sortBy = names.includes(model.get("sort_by")) ? model.get("sort_by") : names[0];
    const desc = model.get("descending");
    const n = names.length ? scores[names[0]].length : 0;
    const rows = [...Array(n).keys()];
    const key = (i) => { const v = scores[sortBy][i]; return v === null || !Number.isFinite(v) ? -Infinity : v; };
    rows.sort((a, b) => (desc ? key(b) - key(a) : key(a) - key(b)) || a - b);
    const table = htmlEl("table", { class: "coax-table" });
    const head = htmlEl("tr", {}, htmlEl("thead", {}, table));
    htmlEl("th", {}, head, "#");
    htmlEl("th", {}, head, "head");
    for (const nm of names) {
      const th = htmlEl("th", { class: "sortable" + (nm === sortBy ? " sorted" : ""), "data-score": nm, tabindex: 0,
        "aria-sort": nm === sortBy ? (desc ? "descending" : "ascending") : "none" }, head,
        nm + (nm === sortBy ? (desc ? " ▼" : " ▲") : ""));
      const act = () => {
        if (nm === sortBy) model.set("descending", !desc); else { model.set("sort_by", nm); model.set("descending", true); }
        model.save_changes();
      };
      th.addEventListener("click", act);
      th.addEventListener("keydown", (evt) => { if (evt.key === "Enter" || evt.key === " ") { evt.preventDefault(); act(); } });
    }
    const body = htmlEl("tbody", {}, table);
    rows.slice(0, model.get("max_rows")).forEach((i, r) => {
      const u = unitName(Math.floor(i / H), i % H);
      const tr = htmlEl("tr", { "data-unit": u, tabindex: 0,
        class: (selected.includes(u) ? "selected " : "") + (primaries.includes(u) ? "primary " : "") + (truth.includes(u) ? "truth" : "") }, body);
      htmlEl("td", {}, tr, String(r + 1));
      htmlEl("td", {}, tr, u + (primaries.includes(u) ? " (S)" : "") + (truth.includes(u) ? " ●" : ""));
      for (const nm of names) htmlEl("td", { class: "num", title: fmt(scores[nm][i]) }, tr, compact(scores[nm][i]));
      const act = (evt) => {
        model.set("selected", evt.shiftKey ? toggled(model.get("selected"), u) : [u]);
        model.save_changes();
      };
      tr.addEventListener("click", act);
      tr.addEventListener("keydown", (evt) => { if (evt.key === "Enter" || evt.key === " ") { evt.preventDefault(); act(evt); } });
    });
    tableBox.replaceChildren(table);
  }
  for (const k of ["scores", "sort_by", "descending", "primaries", "truth", "selected", "max_rows"]) model.on(`change:${k}`, draw);
  draw();
}

export default { render: renderRankingTable };
