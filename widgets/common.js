// Shared helpers of every component. widgets/build.py inlines this module (and the
// palette) into each component's bundle: anywidget loads one self-contained module.
import PALETTE from "./palette.json" with { type: "json" };

const SVG_NS = "http://www.w3.org/2000/svg";

export function svgEl(tag, attrs = {}, parent = null) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

export function htmlEl(tag, attrs = {}, parent = null, text = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

// colour-blind safe scales from palette.json, the file coax_nb.plots draws the PNGs with:
// viridis stops (sequential), blue-white-vermillion (diverging), Okabe-Ito lines
export const LINE_COLORS = PALETTE.lines;

export function lerpStops(stops, t) {
  t = Math.min(1, Math.max(0, t));
  const x = t * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// A scale for the finite values: diverging around 0 when values have both signs.
export function makeScale(values) {
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

export function fmt(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (Number.isInteger(v) && Math.abs(v) < 1e4) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(2);
  return v.toFixed(a < 1 ? 4 : 3);
}

// One line under a view saying what its numbers are (ablation, units, prompts, S), from
// the component's `caption` trait; kept current when the trait changes.
export function captionLine(root, model) {
  const line = htmlEl("div", { class: "coax-caption" }, root);
  const show = () => { line.textContent = model.get("caption") || ""; line.style.display = line.textContent ? "" : "none"; };
  model.on("change:caption", show);
  show();
  return line;
}

export function legend(parent, scale, label) {
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
export function tooltip(root) {
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

export function localXY(root, evt) {
  const r = root.getBoundingClientRect();
  return [evt.clientX - r.left, evt.clientY - r.top];
}

export function toggled(list, item) {
  return list.includes(item) ? list.filter((x) => x !== item) : [...list, item];
}

// heads are labelled the TransformerLens way, as in coax_nb.units
export function unitName(layer, head) { return `L${layer}H${head}`; }
