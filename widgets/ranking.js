// RankingTable: sortable per-head table of scores; click a row to select the head.
// traits: n_heads, scores {name: [flat]}, sort_by, descending, primaries, truth, selected, max_rows
import { captionLine, fmt, htmlEl, toggled, unitName } from "./common.js";

// compact cell numbers (3 significant digits, short exponents) keep the table narrow;
// the full value is the cell's title
function compact(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e4) return String(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(1).replace("e+", "e");
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function renderRankingTable({ model, el }) {
  const root = htmlEl("div", { class: "coax-root coax-ranking" }, el);
  const tableBox = htmlEl("div", { class: "coax-table-box" }, root);
  captionLine(root, model);

  function draw() {
    const H = model.get("n_heads"), scores = model.get("scores"), names = Object.keys(scores);
    const primaries = model.get("primaries"), truth = model.get("truth"), selected = model.get("selected");
    const sortBy = names.includes(model.get("sort_by")) ? model.get("sort_by") : names[0];
    const desc = model.get("descending");
    const n = names.length ? scores[names[0]].length : 0;
    const rows = [...Array(n).keys()];
    const key = (i) => { const v = scores[sortBy][i]; return v === null || !Number.isFinite(v) ? -Infinity : v; };
    rows.sort((a, b) => (desc ? key(b) - key(a) : key(a) - key(b)) || a - b);
    const table = htmlEl("table", { class: "coax-table" });
    const head = htmlEl("tr", {}, htmlEl("thead", {}, table));
    htmlEl("th", {}, head, "#");
    htmlEl("th", {}, head, "head");
    for (const nm of names) {
      const th = htmlEl("th", { class: "sortable" + (nm === sortBy ? " sorted" : ""), "data-score": nm, tabindex: 0,
        "aria-sort": nm === sortBy ? (desc ? "descending" : "ascending") : "none" }, head,
        nm + (nm === sortBy ? (desc ? " ▼" : " ▲") : ""));
      const act = () => {
        if (nm === sortBy) model.set("descending", !desc); else { model.set("sort_by", nm); model.set("descending", true); }
        model.save_changes();
      };
      th.addEventListener("click", act);
      th.addEventListener("keydown", (evt) => { if (evt.key === "Enter" || evt.key === " ") { evt.preventDefault(); act(); } });
    }
    const body = htmlEl("tbody", {}, table);
    rows.slice(0, model.get("max_rows")).forEach((i, r) => {
      const u = unitName(Math.floor(i / H), i % H);
      const tr = htmlEl("tr", { "data-unit": u, tabindex: 0,
        class: (selected.includes(u) ? "selected " : "") + (primaries.includes(u) ? "primary " : "") + (truth.includes(u) ? "truth" : "") }, body);
      htmlEl("td", {}, tr, String(r + 1));
      htmlEl("td", {}, tr, u + (primaries.includes(u) ? " (S)" : "") + (truth.includes(u) ? " ●" : ""));
      for (const nm of names) htmlEl("td", { class: "num", title: fmt(scores[nm][i]) }, tr, compact(scores[nm][i]));
      const act = (evt) => {
        model.set("selected", evt.shiftKey ? toggled(model.get("selected"), u) : [u]);
        model.save_changes();
      };
      tr.addEventListener("click", act);
      tr.addEventListener("keydown", (evt) => { if (evt.key === "Enter" || evt.key === " ") { evt.preventDefault(); act(evt); } });
    });
    tableBox.replaceChildren(table);
  }
  for (const k of ["scores", "sort_by", "descending", "primaries", "truth", "selected", "max_rows"]) model.on(`change:${k}`, draw);
  draw();
}

export default { render: renderRankingTable };
