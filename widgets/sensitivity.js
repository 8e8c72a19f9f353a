// SensitivityExplorer: a slider over k (or ACDC's tau) walks the choices of the primary set S
// of a Sensitivity; S, its size and the ranking re-scored under S follow without the kernel.
// traits: choices [{label, method, k, tau, primaries, n_selected, scores, auc, truth_in_S, source}],
//   groups {name: [choice index, slider order]}, group, index, reference_index, rho_to_reference,
//   overlap_to_reference, top, truth, n_layers, n_heads, by, rows, selected (= S of the current choice)
import { captionLine, fmt, htmlEl, svgEl, unitName } from "./common.js";

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
