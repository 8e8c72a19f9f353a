/* Built by widgets/build.py from palette.json, common.js, sensitivity.js: edit those, then rebuild. */
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

// SensitivityExplorer: a slider over k (or ACDC's tau) walks the choices of the primary set S
// of a Sensitivity; S, its size and the ranking re-scored under S follow without the kernel.
// traits: choices [{label, method, k, tau, primaries, n_selected, scores, auc, truth_in_S, source}],
//   groups {name: [choice index, slider order]}, group, index, reference_index, rho_to_reference,
//   overlap_to_reference, top, truth, n_layers, n_heads, by, rows, selected (= S of the current choice)

const TAU_GROUP = "acdc tau";

function stepText(group, c) {
  if (group === TAU_GROUP) return `tau = ${c.tau}`;
  if (group === "given") return c.label;
  return `k = ${c.k}`;
}

function stepShort(group, c) {
  if (group === TAU_GROUP) return String(c.tau);
  if (group === "given") return c.label;
  return String(c.k);
}

// the heads outside S by descending score, ties in head order (Sensitivity.ranking)
function ranked(scores, rows) {
  const ids = [];
  scores.forEach((v, i) => { if (v !== null && Number.isFinite(v)) ids.push(i); });
  ids.sort((a, b) => scores[b] - scores[a] || a - b);
  return ids.slice(0, rows);
}

function renderSensitivity({ model, el }) {
  const root = htmlEl("div", { class: "coax-root coax-sensitivity" }, el);
  const bar = htmlEl("div", { class: "coax-toolbar coax-sens-controls" }, root);
  htmlEl("label", {}, bar, "choices of S ");
  const select = htmlEl("select", { class: "coax-group-select", "aria-label": "family of choices of S" }, bar);
  const stepName = htmlEl("span", { class: "coax-step-name" }, bar);
  const lo = htmlEl("span", { class: "coax-step-end" }, bar);
  const slider = htmlEl("input", { type: "range", class: "coax-slider", min: 0, step: 1 }, bar);
  const hi = htmlEl("span", { class: "coax-step-end" }, bar);
  const stepValue = htmlEl("span", { class: "coax-step-value" }, bar);
  const selection = htmlEl("div", { class: "coax-sens-selection", "aria-live": "polite" }, root);
  const sLine = htmlEl("span", { class: "coax-sens-s" }, selection);
  const source = htmlEl("span", { class: "coax-sens-source" }, selection);
  const plot = htmlEl("div", { class: "coax-plot" }, root);
  const agreement = htmlEl("div", { class: "coax-sens-agreement" }, root);
  captionLine(root, model);

  // the group shown: the chosen one when it holds the current choice, else the one that does
  function current() {
    const groups = model.get("groups"), index = model.get("index");
    let group = model.get("group");
    if (!(groups[group] || []).includes(index)) {
      group = Object.keys(groups).find((g) => groups[g].includes(index)) || Object.keys(groups)[0];
    }
    return { groups, group, ids: groups[group] || [], index };
  }

  function choose(i, group = null) {
    if (group !== null) model.set("group", group);
    model.set("index", i);
    model.set("selected", [...model.get("choices")[i].primaries]);
    model.save_changes();
  }

  function drawRanking(c) {
    const H = model.get("n_heads"), truth = model.get("truth"), by = model.get("by");
    const ids = ranked(c.scores, model.get("rows"));
    if (ids.length === 0) {
      const empty = "no ranking: this choice selects no heads";
      plot.replaceChildren(htmlEl("div", { class: "coax-sens-empty" }, null, empty));
      return;
    }
    const vals = ids.map((i) => c.scores[i]);
    const v0 = Math.min(0, ...vals), v1 = Math.max(0, ...vals);
    const rowH = 20, top = 20, left = 78, barW = 300, W = left + barW + 90;
    const sx = (v) => left + ((v - v0) / (v1 - v0 || 1)) * barW;
    const svg = svgEl("svg", { width: W, height: top + ids.length * rowH + 6, class: "coax-svg coax-sens-ranking",
      role: "list", "aria-label": `top ${ids.length} heads by ${by} with S removed` });
    const head = svgEl("text", { x: left, y: 12, class: "coax-axis" }, svg);
    head.textContent = `${by}, re-scored under S (○ = ground truth)`;
    ids.forEach((i, r) => {
      const u = unitName(Math.floor(i / H), i % H), v = c.scores[i], isTruth = truth.includes(u);
      const y = top + r * rowH;
      const g = svgEl("g", { class: "rank-row" + (isTruth ? " truth" : ""), "data-unit": u, role: "listitem",
        "aria-label": `${r + 1}. ${u}${isTruth ? " (ground truth)" : ""}, ${by} ${fmt(v)}` }, svg);
      svgEl("title", {}, g).textContent = `${u}${isTruth ? " — ground truth" : ""}: ${by} ${fmt(v)}`;
      const rank = svgEl("text", { x: 4, y: y + 14, class: "coax-axis rank-no" }, g);
      rank.textContent = String(r + 1);
      const label = svgEl("text", { x: left - 6, y: y + 14, "text-anchor": "end",
        class: "head-label" + (isTruth ? " truth" : "") }, g);
      label.textContent = u + (isTruth ? " ○" : "");
      svgEl("rect", { x: Math.min(sx(0), sx(v)), y: y + 3, width: Math.max(1, Math.abs(sx(v) - sx(0))),
        height: rowH - 6, class: "bar" + (isTruth ? " truth" : "") }, g);
      const value = svgEl("text", { x: left + barW + 8, y: y + 14, class: "value" }, g);
      value.textContent = fmt(v);
    });
    svgEl("line", { x1: sx(0), x2: sx(0), y1: top, y2: top + ids.length * rowH, class: "coax-axisline" }, svg);
    plot.replaceChildren(svg);
  }

  function draw() {
    const choices = model.get("choices");
    const { groups, group, ids, index } = current();
    const c = choices[index];
    select.replaceChildren();
    for (const g of Object.keys(groups)) {
      const n = groups[g].length;
      const o = htmlEl("option", { value: g }, select, `${g} (${n} choice${n === 1 ? "" : "s"})`);
      if (g === group) o.selected = true;
    }
    const pos = Math.max(0, ids.indexOf(index));
    const name = group === TAU_GROUP ? "tau" : group === "given" ? "set" : "k";
    stepName.textContent = `${name}:`;
    slider.max = String(Math.max(0, ids.length - 1));
    slider.value = String(pos);
    slider.disabled = ids.length < 2;
    slider.setAttribute("aria-label", `${name} of the ${group} choices of S`);
    slider.setAttribute("aria-valuetext", stepText(group, c));
    // the slider's ends, when it has two
    lo.textContent = ids.length > 1 ? stepShort(group, choices[ids[0]]) : "";
    hi.textContent = ids.length > 1 ? stepShort(group, choices[ids[ids.length - 1]]) : "";
    stepValue.textContent = stepText(group, c);
    const n = c.primaries.length;
    sLine.textContent = `S = ${c.primaries.join(", ") || "none"} (${n} head${n === 1 ? "" : "s"} selected)`;
    source.textContent = c.source ? ` — ${c.source}` : "";
    drawRanking(c);
    const ref = choices[model.get("reference_index")];
    const parts = [];
    if (index === model.get("reference_index")) {
      parts.push(`this is the reference choice (${ref.label})`);
    } else {
      parts.push(`vs reference ${ref.label}: Spearman rho ${fmt(model.get("rho_to_reference")[index])}`,
        `top-${model.get("top")} overlap ${fmt(model.get("overlap_to_reference")[index])}`);
    }
    const truth = model.get("truth");
    if (c.auc !== null && c.auc !== undefined) {
      parts.push(`ROC-AUC ${fmt(c.auc)} against ${truth.length} truth heads`
        + (c.truth_in_S ? ` (${c.truth_in_S} inside S, not ranked)` : ""));
    } else if (truth.length) {
      parts.push("no ROC-AUC for this choice" + (c.truth_in_S ? ` (${c.truth_in_S} truth heads inside S)` : ""));
    }
    agreement.textContent = parts.join(" · ");
    root.dataset.index = String(index);
  }

  slider.addEventListener("input", () => {
    const { group, ids } = current();
    const i = ids[Number(slider.value)];
    if (i !== undefined && i !== model.get("index")) choose(i, group);
  });
  select.addEventListener("change", () => {
    const ids = model.get("groups")[select.value] || [];
    if (ids.length) choose(ids[0], select.value);
  });
  for (const k of ["choices", "groups", "group", "index", "reference_index", "rho_to_reference",
    "overlap_to_reference", "top", "truth", "n_heads", "by", "rows"]) {
    model.on(`change:${k}`, draw);
  }
  draw();
}

export default { render: renderSensitivity };
