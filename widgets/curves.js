// Curves: multi-series line chart with optional bands, log-y toggle, legend toggles,
// hover readout at the nearest x, live redraw when series grow.
// traits: data {title, xlabel, ylabel, series: [{name, x, y, lo?, hi?}], log_y}, hidden [names]
import { captionLine, fmt, htmlEl, LINE_COLORS, localXY, svgEl, toggled } from "./common.js";


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
