// BlindSpot: first-order percentile (x) vs CoAx percentile (y) per head outside the primaries.
// traits: units [names], x [values], y [values], x_label, y_label, truth, primaries, selected
import { captionLine, fmt, htmlEl, svgEl, toggled, tooltip } from "./common.js";

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
