// SynergyGrid: pairwise matrix over a head set, group blocks, reorder, click a pair,
// collapse a group (module) to one row and column.
// traits: units, values [[...]], groups [label per unit], orders {name: [indices]}, order, label, selected,
// selected_pair, collapsed [group labels], caption
import { captionLine, fmt, htmlEl, legend, makeScale, svgEl, tooltip } from "./common.js";

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
