// HeadMap: layer x head grid of any per-head score.
// traits: n_layers, n_heads, scores {name: [flat values]}, score, primaries, truth, selected, busy, click_action
import { captionLine, fmt, htmlEl, legend, makeScale, svgEl, toggled, tooltip, unitName } from "./common.js";

function renderHeadMap({ model, el }) {
  const root = htmlEl("div", { class: "coax-root coax-headmap" }, el);
  const bar = htmlEl("div", { class: "coax-toolbar" }, root);
  htmlEl("label", { for: "coax-score" }, bar, "score ");
  const select = htmlEl("select", { class: "coax-score-select", "aria-label": "score" }, bar);
  const status = htmlEl("span", { class: "coax-status" }, bar);
  const busy = htmlEl("span", { class: "coax-busy", "aria-live": "polite" }, bar, "recomputing…");
  const svgBox = htmlEl("div", { class: "coax-plot" }, root);
  const legendBox = htmlEl("div", {}, root);
  captionLine(root, model);
  const tip = tooltip(root);

  function draw() {
    const L = model.get("n_layers"), H = model.get("n_heads");
    const scores = model.get("scores"), names = Object.keys(scores);
    let score = model.get("score");
    if (!names.includes(score)) score = names[0];
    select.replaceChildren();
    for (const n of names) {
      const o = htmlEl("option", { value: n }, select, n);
      if (n === score) o.selected = true;
    }
    const vals = scores[score] || [];
    const primaries = model.get("primaries"), truth = model.get("truth"), selected = model.get("selected");
    const scale = makeScale(vals.filter((_, i) => !primaries.includes(unitName(Math.floor(i / H), i % H))));
    const cell = Math.max(14, Math.min(36, Math.floor(520 / Math.max(H, 1))));
    const left = 34, top = 18;
    const svg = svgEl("svg", { width: left + H * cell + 4, height: top + L * cell + 4, class: "coax-svg" });
    for (let h = 0; h < H; h++) {
      const t = svgEl("text", { x: left + h * cell + cell / 2, y: 12, class: "coax-axis", "text-anchor": "middle" }, svg);
      t.textContent = h;
    }
    for (let l = 0; l < L; l++) {
      const t = svgEl("text", { x: left - 6, y: top + l * cell + cell / 2 + 4, class: "coax-axis", "text-anchor": "end" }, svg);
      t.textContent = `L${l}`;
      for (let h = 0; h < H; h++) {
        const i = l * H + h, u = unitName(l, h), v = vals[i];
        const g = svgEl("g", { class: "cell", "data-unit": u, tabindex: 0, role: "button",
          "aria-label": `head ${u}, ${score} ${fmt(v)}` }, svg);
        const isPrimary = primaries.includes(u);
        svgEl("rect", { x: left + h * cell + 1, y: top + l * cell + 1, width: cell - 2, height: cell - 2,
          fill: isPrimary ? "var(--coax-primary)" : scale.color(v),
          class: "cell-rect" + (selected.includes(u) ? " selected" : "") + (isPrimary ? " primary" : "") }, g);
        if (isPrimary) {
          const s = svgEl("text", { x: left + h * cell + cell / 2, y: top + l * cell + cell / 2 + 4,
            "text-anchor": "middle", class: "coax-mark" }, g);
          s.textContent = "S";
        }
        if (truth.includes(u)) {
          svgEl("circle", { cx: left + h * cell + cell - 6, cy: top + l * cell + 6, r: 3, class: "truth-mark" }, g);
        }
        g.addEventListener("mousemove", (evt) => {
          const lines = [`head ${u}${isPrimary ? " (primary)" : ""}${truth.includes(u) ? " — ground truth" : ""}`];
          for (const n of names) lines.push(`${n}: ${fmt(scores[n][i])}`);
          tip.show(lines, evt);
        });
        g.addEventListener("mouseleave", () => tip.hide());
        const act = (evt) => {
          const selectOnly = evt.shiftKey || model.get("click_action") === "select";
          if (selectOnly) {
            model.set("selected", toggled(model.get("selected"), u));
          } else {
            if (model.get("busy")) return;
            model.set("primaries", toggled(model.get("primaries"), u));
          }
          model.save_changes();
        };
        g.addEventListener("click", act);
        g.addEventListener("keydown", (evt) => {
          if (evt.key === "Enter" || evt.key === " ") { evt.preventDefault(); act(evt); }
        });
      }
    }
    svgBox.replaceChildren(svg);
    legendBox.replaceChildren();
    legend(legendBox, scale, score + (scale.diverging ? " (diverging around 0)" : ""));
    const err = model.get("error");
    status.textContent = `primaries: ${primaries.join(", ") || "none"}` + (err ? ` — could not recompute: ${err}` : "");
    busy.style.display = model.get("busy") ? "inline" : "none";
    root.dataset.version = String(model.get("version"));
  }
  select.addEventListener("change", () => { model.set("score", select.value); model.save_changes(); });
  for (const k of ["scores", "score", "primaries", "truth", "selected", "busy", "n_layers", "n_heads", "version", "error"]) {
    model.on(`change:${k}`, draw);
  }
  draw();
}

export default { render: renderHeadMap };
