/* Built by widgets/build.py from palette.json, common.js, synergy.js: edit those, then rebuild. */
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

// SynergyGrid: pairwise matrix over a head set, group blocks, reorder, click a pair,
// collapse a group (module) to one row and column.
// traits: units, values [[...]], groups [label per unit], orders {name: [indices]}, order, label, selected,
// selected_pair, collapsed [group labels], caption

const MAX_LABEL = 260;
const UNGROUPED = "other"; // heads outside every group: never collapsed

// The rows drawn: heads in the order, each collapsed group as one row where its first
// member stands; a cell is the mean over the two rows' head pairs (u != v, null left out).
// coax_nb/widgets/synergy.py's collapse() computes the same (a test holds them equal).
function collapse(units, V, groups, ord, collapsed) {
  const rows = [], placed = new Set();
  for (const i of ord) {
    const g = groups.length ? groups[i] : null;
    if (g !== null && collapsed.includes(g) && g !== UNGROUPED) {
      if (placed.has(g)) continue;
      placed.add(g);
      const members = ord.filter((j) => groups[j] === g);
      rows.push({ label: `${g} (${members.length} heads)`, group: g, members, whole: true });
    } else {
      rows.push({ label: units[i], group: g, members: [i], whole: false });
    }
  }
  const cell = (A, B) => {
    let sum = 0, n = 0;
    for (const a of A.members) for (const b of B.members) {
      const v = V[a][b];
      if (a !== b && v !== null && Number.isFinite(v)) { sum += v; n += 1; }
    }
    return { value: n ? sum / n : null, pairs: n };
  };
  return { rows, cell };
}

function renderSynergyGrid({ model, el }) {
  const root = htmlEl("div", { class: "coax-root coax-synergy" }, el);
  const bar = htmlEl("div", { class: "coax-toolbar" }, root);
  htmlEl("span", {}, bar, "order ");
  const select = htmlEl("select", { class: "coax-order-select", "aria-label": "order" }, bar);
  const modulesBar = htmlEl("span", { class: "coax-modules" }, bar);
  const svgBox = htmlEl("div", { class: "coax-plot" }, root);
  const legendBox = htmlEl("div", {}, root);
  captionLine(root, model);
  const tip = tooltip(root);

  function toggleGroup(g) {
    const now = model.get("collapsed") || [];
    model.set("collapsed", now.includes(g) ? now.filter((x) => x !== g) : [...now, g]);
    model.save_changes();
  }

  // text widths in the page's own font: a scratch <svg> in the component, removed at once
  // (an unrendered page, e.g. a hidden tab, measures 0: then 6.5 px a character)
  function measure(texts) {
    const probe = svgEl("svg", { class: "coax-svg", width: 0, height: 0 });
    svgBox.appendChild(probe);
    const widths = texts.map((t) => {
      const e = svgEl("text", { class: "coax-axis" }, probe);
      e.textContent = t;
      return e.getComputedTextLength() || 6.5 * t.length;
    });
    probe.remove();
    return widths;
  }
  function clip(text, maxPx, width) {
    const keep = Math.max(4, Math.floor((text.length * maxPx) / width) - 1);
    return text.slice(0, keep) + "…";
  }

  function draw() {
    const units = model.get("units"), V = model.get("values"), groups = model.get("groups");
    const orders = model.get("orders"), selected = model.get("selected");
    let orderName = model.get("order");
    if (!(orderName in orders)) orderName = Object.keys(orders)[0];
    select.replaceChildren();
    for (const n of Object.keys(orders)) {
      const o = htmlEl("option", { value: n }, select, n);
      if (n === orderName) o.selected = true;
    }
    const ord = orders[orderName];
    const collapsed = model.get("collapsed") || [];
    // one toggle per group: collapse it to one row and column (its mean), or expand it
    const names = [...new Set(ord.map((i) => groups[i]))].filter((g) => g !== undefined && g !== UNGROUPED);
    modulesBar.replaceChildren();
    if (names.length) htmlEl("span", {}, modulesBar, " collapse ");
    for (const g of names) {
      const on = collapsed.includes(g);
      const btn = htmlEl("button", { class: "coax-collapse" + (on ? " on" : ""), "aria-pressed": String(on),
        "data-group": g, title: on ? `expand ${g} into its heads` : `draw ${g} as one row: the mean over its pairs` },
        modulesBar, `${on ? "▸" : "▾"} ${g}`);
      btn.addEventListener("click", () => toggleGroup(g));
    }
    const { rows, cell: pairCell } = collapse(units, V, groups, ord, collapsed);
    const n = rows.length;
    const values = [];
    rows.forEach((A, r) => rows.forEach((B, c) => { if (r !== c || A.whole) values.push(pairCell(A, B).value); }));
    const scale = makeScale(values);
    const cell = Math.max(12, Math.min(34, Math.floor(480 / Math.max(n, 1))));
    // row labels carry the group name: the left margin grows to the longest label, up to
    // MAX_LABEL px; a longer one ends in "…" and shows the whole name as its title
    const rowLabel = (A) => (A.whole ? `▸ ${A.label}` : `${A.label}${groups.length ? " " + A.group : ""}`);
    const labelWidth = measure(rows.map(rowLabel));
    const left = Math.max(86, Math.min(MAX_LABEL, Math.max(0, ...labelWidth)) + 10), top = 70;
    const svg = svgEl("svg", { width: left + n * cell + 6, height: top + n * cell + 6, class: "coax-svg" });
    const heads = (A) => A.members.map((i) => units[i]);
    rows.forEach((A, r) => {
      const grouped = groups.length && A.group !== UNGROUPED;
      const lg = svgEl("g", { class: "coax-row-label" + (grouped ? " toggles" : ""), "data-row": A.label }, svg);
      svgEl("title", {}, lg).textContent = A.whole ? `${A.group}: ${heads(A).join(", ")} (click to expand)`
        : groups.length ? `${A.label} — group ${A.group}${grouped ? " (click to collapse)" : ""}` : A.label;
      const ty = svgEl("text", { x: left - 4, y: top + r * cell + cell / 2 + 4, class: "coax-axis", "text-anchor": "end" }, lg);
      const full = rowLabel(A);
      ty.textContent = labelWidth[r] > MAX_LABEL ? clip(full, MAX_LABEL, labelWidth[r]) : full;
      if (grouped) lg.addEventListener("click", () => toggleGroup(A.group));
      const tx = svgEl("text", { x: left + r * cell + cell / 2, y: top - 4, class: "coax-axis",
        transform: `rotate(-60 ${left + r * cell + cell / 2} ${top - 4})` }, svg);
      tx.textContent = A.whole ? A.group : A.label;
      rows.forEach((B, c) => {
        const { value: v, pairs } = pairCell(A, B);
        const empty = r === c && !A.whole;
        const both = [...heads(A), ...heads(B)];
        const rect = svgEl("rect", { x: left + c * cell + 1, y: top + r * cell + 1, width: cell - 2, height: cell - 2,
          fill: empty ? "var(--coax-nan)" : scale.color(v), tabindex: empty ? -1 : 0, "data-pair": `${A.label}|${B.label}`,
          class: "pair-cell" + (!empty && both.every((u) => selected.includes(u)) ? " selected" : "") }, svg);
        if (empty) return;
        const whole = A.whole || B.whole;
        rect.addEventListener("mousemove", (evt) => {
          tip.show([`${A.label} × ${B.label}`,
            whole ? `${model.get("label")}: mean ${fmt(v)} over ${pairs} pairs` : `${model.get("label")}: ${fmt(v)}`,
            groups.length && !whole ? `groups: ${A.group} / ${B.group}` : ""].filter(Boolean), evt);
        });
        rect.addEventListener("mouseleave", () => tip.hide());
        const act = () => {
          model.set("selected_pair", whole ? [] : [A.label, B.label]);
          model.set("selected", [...new Set(both)]);
          model.save_changes();
        };
        rect.addEventListener("click", act);
        rect.addEventListener("keydown", (evt) => { if (evt.key === "Enter" || evt.key === " ") { evt.preventDefault(); act(); } });
      });
    });
    // group blocks: outline runs of equal group labels along the drawn rows
    if (groups.length) {
      let start = 0;
      for (let r = 1; r <= n; r++) {
        if (r === n || rows[r].group !== rows[start].group) {
          svgEl("rect", { x: left + start * cell, y: top + start * cell, width: (r - start) * cell,
            height: (r - start) * cell, class: "group-block" }, svg);
          start = r;
        }
      }
    }
    svgBox.replaceChildren(svg);
    legendBox.replaceChildren();
    legend(legendBox, scale, model.get("label"));
  }
  select.addEventListener("change", () => { model.set("order", select.value); model.save_changes(); });
  for (const k of ["units", "values", "groups", "orders", "order", "label", "selected", "collapsed"]) {
    model.on(`change:${k}`, draw);
  }
  draw();
}

export default { render: renderSynergyGrid };
