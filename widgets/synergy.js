// SynergyGrid: pairwise matrix over a head set, group blocks, reorder, click a pair.
// traits: units, values [[...]], groups [label per unit], orders {name: [indices]}, order, label, selected, selected_pair
import { fmt, htmlEl, legend, makeScale, svgEl, tooltip } from "./common.js";

const MAX_LABEL = 260;

function renderSynergyGrid({ model, el }) {
  const root = htmlEl("div", { class: "coax-root coax-synergy" }, el);
  const bar = htmlEl("div", { class: "coax-toolbar" }, root);
  htmlEl("span", {}, bar, "order ");
  const select = htmlEl("select", { class: "coax-order-select", "aria-label": "order" }, bar);
  const svgBox = htmlEl("div", { class: "coax-plot" }, root);
  const legendBox = htmlEl("div", {}, root);
  const tip = tooltip(root);

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
    const n = units.length;
    const flat = [];
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) flat.push(V[a][b]);
    const scale = makeScale(flat);
    const cell = Math.max(12, Math.min(34, Math.floor(480 / Math.max(n, 1))));
    // row labels carry the group name: the left margin grows to the longest label, up to
    // MAX_LABEL px; a longer one ends in "…" and shows the whole name as its title
    const rowLabel = (a) => `${units[a]}${groups.length ? " " + groups[a] : ""}`;
    const labelWidth = measure(ord.map(rowLabel));
    const left = Math.max(86, Math.min(MAX_LABEL, Math.max(0, ...labelWidth)) + 10), top = 70;
    const svg = svgEl("svg", { width: left + n * cell + 6, height: top + n * cell + 6, class: "coax-svg" });
    ord.forEach((a, r) => {
      const lg = svgEl("g", { class: "coax-row-label" }, svg);
      svgEl("title", {}, lg).textContent = groups.length ? `${units[a]} — group ${groups[a]}` : units[a];
      const ty = svgEl("text", { x: left - 4, y: top + r * cell + cell / 2 + 4, class: "coax-axis", "text-anchor": "end" }, lg);
      const full = rowLabel(a);
      ty.textContent = labelWidth[r] > MAX_LABEL ? clip(full, MAX_LABEL, labelWidth[r]) : full;
      const tx = svgEl("text", { x: left + r * cell + cell / 2, y: top - 4, class: "coax-axis",
        transform: `rotate(-60 ${left + r * cell + cell / 2} ${top - 4})` }, svg);
      tx.textContent = units[a];
      ord.forEach((b, c) => {
        const v = V[a][b];
        const pair = `${units[a]}|${units[b]}`;
        const rect = svgEl("rect", { x: left + c * cell + 1, y: top + r * cell + 1, width: cell - 2, height: cell - 2,
          fill: a === b ? "var(--coax-nan)" : scale.color(v), tabindex: a === b ? -1 : 0, "data-pair": pair,
          class: "pair-cell" + (selected.includes(units[a]) && selected.includes(units[b]) && a !== b ? " selected" : "") }, svg);
        if (a === b) return;
        rect.addEventListener("mousemove", (evt) => {
          tip.show([`${units[a]} × ${units[b]}`, `${model.get("label")}: ${fmt(v)}`,
            groups.length ? `groups: ${groups[a]} / ${groups[b]}` : ""].filter(Boolean), evt);
        });
        rect.addEventListener("mouseleave", () => tip.hide());
        const act = () => {
          model.set("selected_pair", [units[a], units[b]]);
          model.set("selected", [units[a], units[b]]);
          model.save_changes();
        };
        rect.addEventListener("click", act);
        rect.addEventListener("keydown", (evt) => { if (evt.key === "Enter" || evt.key === " ") { evt.preventDefault(); act(); } });
      });
    });
    // group blocks: outline runs of equal group labels along the current order
    if (groups.length) {
      let start = 0;
      for (let r = 1; r <= n; r++) {
        if (r === n || groups[ord[r]] !== groups[ord[start]]) {
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
  for (const k of ["units", "values", "groups", "orders", "order", "label", "selected"]) model.on(`change:${k}`, draw);
  draw();
}

export default { render: renderSynergyGrid };
