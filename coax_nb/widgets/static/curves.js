/* Built by widgets/build.py from palette.json, common.js, curves.js: edit those, then rebuild. */
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

// Curves: multi-series line chart with optional bands, log-y toggle, legend toggles,
// hover readout at the nearest x, live redraw when series grow.
// traits: data {title, xlabel, ylabel, series: [{name, x, y, lo?, hi?}], log_y}, hidden [names]


function renderCurves({ model, el }) {
  const root = htmlEl("div", { class: "coax-root coax-curves" }, el);
  const bar = htmlEl("div", { class: "coax-toolbar" }, root);
  const title = htmlEl("span", { class: "coax-title" }, bar);
  const logLabel = htmlEl("label", { class: "coax-log" }, bar);
  const logBox = htmlEl("input", { type: "checkbox", class: "coax-log-toggle", "aria-label": "log scale" }, logLabel);
  logLabel.append(" log y");
  const svgBox = htmlEl("div", { class: "coax-plot" }, root);
  const legendBox = htmlEl("div", { class: "coax-series-legend" }, root);
  const readout = htmlEl("div", { class: "coax-readout", "aria-live": "polite" }, root);
  captionLine(root, model);
  const W = 520, Hh = 300, m = { l: 58, r: 14, t: 12, b: 42 };

  function draw() {
    const data = model.get("data");
    const hidden = model.get("hidden");
    const series = (data.series || []);
    const logY = !!data.log_y;
    logBox.checked = logY;
    title.textContent = data.title || "";
    const shown = series.filter((s) => !hidden.includes(s.name));
    const xsAll = shown.flatMap((s) => s.x), ysAll = shown.flatMap((s) => [...s.y, ...(s.lo || []), ...(s.hi || [])])
      .filter((v) => Number.isFinite(v) && (!logY || v > 0));
    const x0 = Math.min(...xsAll, 0), x1 = Math.max(...xsAll, 1);
    let y0 = ysAll.length ? Math.min(...ysAll) : 0, y1 = ysAll.length ? Math.max(...ysAll) : 1;
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const ty = (v) => (logY ? Math.log10(v) : v);
    const [ly0, ly1] = [ty(y0), ty(y1)];
    const sx = (v) => m.l + ((v - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
    const sy = (v) => Hh - m.b - ((ty(v) - ly0) / (ly1 - ly0 || 1)) * (Hh - m.t - m.b);
    const svg = svgEl("svg", { width: W, height: Hh, class: "coax-svg" });
    svgEl("line", { x1: m.l, y1: Hh - m.b, x2: W - m.r, y2: Hh - m.b, class: "coax-axisline" }, svg);
    svgEl("line", { x1: m.l, y1: m.t, x2: m.l, y2: Hh - m.b, class: "coax-axisline" }, svg);
    // axis ticks: 3 significant digits without trailing zeros (0.75, not 0.7500); the readout keeps fmt's precision
    const tick = (v) => (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? fmt(v) : String(Number(v.toPrecision(3))));
    for (let k = 0; k <= 4; k++) {
      const yv = logY ? 10 ** (ly0 + (k / 4) * (ly1 - ly0)) : y0 + (k / 4) * (y1 - y0);
      const t = svgEl("text", { x: m.l - 6, y: sy(yv) + 4, class: "coax-axis", "text-anchor": "end" }, svg);
      t.textContent = tick(yv);
      const xv = x0 + (k / 4) * (x1 - x0);
      const tx = svgEl("text", { x: sx(xv), y: Hh - m.b + 16, class: "coax-axis", "text-anchor": "middle" }, svg);
      tx.textContent = tick(xv);
    }
    const xl = svgEl("text", { x: (W + m.l) / 2, y: Hh - 6, class: "coax-axis", "text-anchor": "middle" }, svg);
    xl.textContent = data.xlabel || "";
    const yl = svgEl("text", { x: 12, y: (Hh - m.b) / 2, class: "coax-axis", "text-anchor": "middle",
      transform: `rotate(-90 12 ${(Hh - m.b) / 2})` }, svg);
    yl.textContent = data.ylabel || "";
    series.forEach((s, k) => {
      if (hidden.includes(s.name)) return;
      const color = LINE_COLORS[k % LINE_COLORS.length];
      const ok = (v) => Number.isFinite(v) && (!logY || v > 0);
      if (s.lo && s.hi) {
        const pts = s.x.map((x, i) => [x, s.hi[i]]).filter((p) => ok(p[1]));
        const back = s.x.map((x, i) => [x, s.lo[i]]).filter((p) => ok(p[1])).reverse();
        if (pts.length && back.length) {
          svgEl("path", { d: "M" + [...pts, ...back].map(([x, y]) => `${sx(x)},${sy(y)}`).join("L") + "Z",
            fill: color, class: "band" }, svg);
        }
      }
      const pts = s.x.map((x, i) => [x, s.y[i]]).filter((p) => ok(p[1]));
      if (pts.length) {
        svgEl("path", { d: "M" + pts.map(([x, y]) => `${sx(x)},${sy(y)}`).join("L"), stroke: color,
          "data-series": s.name, class: "line" }, svg);
      }
    });
    const cursor = svgEl("line", { y1: m.t, y2: Hh - m.b, class: "coax-cursor", visibility: "hidden" }, svg);
    const hit = svgEl("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: Hh - m.t - m.b, class: "coax-hit" }, svg);
    hit.addEventListener("mousemove", (evt) => {
      const [px] = localXY(svg, evt);
      const xv = x0 + ((px - m.l) / (W - m.l - m.r)) * (x1 - x0);
      const parts = [];
      let nearest = null;
      for (const s of shown) {
        if (!s.x.length) continue;
        let j = 0;
        s.x.forEach((x, i) => { if (Math.abs(x - xv) < Math.abs(s.x[j] - xv)) j = i; });
        nearest = s.x[j];
        parts.push(`${s.name}: ${fmt(s.y[j])}`);
      }
      if (nearest === null) return;
      cursor.setAttribute("x1", sx(nearest)); cursor.setAttribute("x2", sx(nearest));
      cursor.setAttribute("visibility", "visible");
      readout.textContent = `${data.xlabel || "x"} = ${fmt(nearest)} — ${parts.join("; ")}`;
    });
    hit.addEventListener("mouseleave", () => cursor.setAttribute("visibility", "hidden"));
    svgBox.replaceChildren(svg);
    legendBox.replaceChildren();
    series.forEach((s, k) => {
      const item = htmlEl("button", { class: "legend-item" + (hidden.includes(s.name) ? " off" : ""),
        "data-series": s.name, "aria-pressed": String(!hidden.includes(s.name)) }, legendBox);
      const sw = htmlEl("span", { class: "swatch" }, item);
      sw.style.background = LINE_COLORS[k % LINE_COLORS.length];
      item.append(` ${s.name}`);
      item.addEventListener("click", () => { model.set("hidden", toggled(model.get("hidden"), s.name)); model.save_changes(); });
    });
  }
  logBox.addEventListener("change", () => {
    model.set("data", { ...model.get("data"), log_y: logBox.checked });
    model.save_changes();
  });
  model.on("change:data", draw);
  model.on("change:hidden", draw);
  draw();
}

export default { render: renderCurves };
