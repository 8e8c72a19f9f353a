/* Built by widgets/build.py from palette.json, common.js, blindspot.js: edit those, then rebuild. */
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

// BlindSpot: first-order percentile (x) vs CoAx percentile (y) per head outside the primaries.
// traits: units [names], x [values], y [values], x_label, y_label, truth, primaries, selected

function percentiles(vals) {
  const idx = vals.map((v, i) => i).filter((i) => vals[i] !== null && Number.isFinite(vals[i]));
  idx.sort((a, b) => vals[a] - vals[b]);
  const out = vals.map(() => null);
  idx.forEach((i, r) => { out[i] = idx.length > 1 ? (100 * r) / (idx.length - 1) : 50; });
  return out;
}

function renderBlindSpot({ model, el }) {
  const root = htmlEl("div", { class: "coax-root coax-blindspot" }, el);
  const title = htmlEl("div", { class: "coax-title" }, root);
  // the shaded quadrant's key sits above the plot, where it can never cover a point
  const key = htmlEl("div", { class: "coax-blind-key" }, root);
  htmlEl("span", { class: "coax-blind-swatch", "aria-hidden": "true" }, key);
  htmlEl("span", { class: "coax-blind-label" }, key, "blind spot (shaded): low first-order, high CoAx");
  const svgBox = htmlEl("div", { class: "coax-plot" }, root);
  captionLine(root, model);
  const tip = tooltip(root);
  const W = 380, Hh = 340, m = { l: 52, r: 12, t: 10, b: 44 };

  function draw() {
    const units = model.get("units"), xs = model.get("x"), ys = model.get("y");
    const primaries = model.get("primaries"), truth = model.get("truth"), selected = model.get("selected");
    const keep = units.map((u, i) => i).filter((i) => !primaries.includes(units[i]));
    const px = percentiles(keep.map((i) => xs[i])), py = percentiles(keep.map((i) => ys[i]));
    title.textContent = `${model.get("y_label")} vs ${model.get("x_label")} (percentiles; primaries left out)`;
    const svg = svgEl("svg", { width: W, height: Hh, class: "coax-svg" });
    const sx = (p) => m.l + (p / 100) * (W - m.l - m.r), sy = (p) => Hh - m.b - (p / 100) * (Hh - m.t - m.b);
    svgEl("rect", { x: sx(50), y: sy(100), width: sx(100) - sx(50), height: sy(50) - sy(100), class: "coax-quadrant" }, svg);
    svgEl("rect", { x: sx(0), y: sy(100), width: sx(50) - sx(0), height: sy(50) - sy(100), class: "coax-blind" }, svg);
    svgEl("line", { x1: sx(0), y1: sy(0), x2: sx(100), y2: sy(0), class: "coax-axisline" }, svg);
    svgEl("line", { x1: sx(0), y1: sy(0), x2: sx(0), y2: sy(100), class: "coax-axisline" }, svg);
    for (const p of [0, 50, 100]) {
      const tx = svgEl("text", { x: sx(p), y: Hh - m.b + 16, class: "coax-axis", "text-anchor": "middle" }, svg);
      tx.textContent = p;
      const ty = svgEl("text", { x: m.l - 6, y: sy(p) + 4, class: "coax-axis", "text-anchor": "end" }, svg);
      ty.textContent = p;
    }
    const xl = svgEl("text", { x: (W + m.l) / 2, y: Hh - 8, class: "coax-axis", "text-anchor": "middle" }, svg);
    xl.textContent = `${model.get("x_label")} percentile`;
    const yl = svgEl("text", { x: 14, y: (Hh - m.b) / 2, class: "coax-axis", "text-anchor": "middle",
      transform: `rotate(-90 14 ${(Hh - m.b) / 2})` }, svg);
    yl.textContent = `${model.get("y_label")} percentile`;
    keep.forEach((i, k) => {
      if (px[k] === null || py[k] === null) return;
      const u = units[i];
      const c = svgEl("circle", { cx: sx(px[k]), cy: sy(py[k]), r: truth.includes(u) ? 6 : 4.5, tabindex: 0,
        "data-unit": u, role: "button", "aria-label": `head ${u}`,
        class: "point" + (truth.includes(u) ? " truth" : "") + (selected.includes(u) ? " selected" : "") }, svg);
      c.addEventListener("mousemove", (evt) => {
        tip.show([`head ${u}${truth.includes(u) ? " — ground truth" : ""}`,
          `${model.get("x_label")}: ${fmt(xs[i])} (p${Math.round(px[k])})`,
          `${model.get("y_label")}: ${fmt(ys[i])} (p${Math.round(py[k])})`], evt);
      });
      c.addEventListener("mouseleave", () => tip.hide());
      const act = (evt) => {
        const cur = model.get("selected");
        model.set("selected", evt.shiftKey ? toggled(cur, u) : (cur.length === 1 && cur[0] === u ? [] : [u]));
        model.save_changes();
      };
      c.addEventListener("click", act);
      c.addEventListener("keydown", (evt) => { if (evt.key === "Enter" || evt.key === " ") { evt.preventDefault(); act(evt); } });
    });
    svgBox.replaceChildren(svg);
  }
  for (const k of ["units", "x", "y", "primaries", "truth", "selected", "x_label", "y_label"]) model.on(`change:${k}`, draw);
  draw();
}

export default { render: renderBlindSpot };
