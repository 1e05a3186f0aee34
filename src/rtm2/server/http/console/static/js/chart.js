// A small line chart in plain SVG: the last `span` seconds of one or more series.

const NS = "http://www.w3.org/2000/svg";
const W = 600;
const H = 180;
const PAD = { left: 44, right: 8, top: 10, bottom: 18 };

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function nice(max) {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

function short(v) {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/**
 * Draw into `svg` the series [{name, class, points: [[t, v], ...]}] over the `span` seconds
 * up to `now` (Unix seconds).
 */
export function draw(svg, title, series, now, span) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const last = series.map((x) => `${x.name} ${short(x.points.length ? x.points[x.points.length - 1][1] : 0)}`);
  svg.setAttribute("aria-label", `${title}: ${last.join(", ")}`);
  let max = 0;
  for (const x of series) for (const [, v] of x.points) max = Math.max(max, v);
  max = nice(max);
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  const y1 = PAD.top;
  const X = (t) => x0 + ((t - (now - span)) / span) * (x1 - x0);
  const Y = (v) => y0 - (v / max) * (y0 - y1);
  for (const f of [0, 0.5, 1]) {
    const y = Y(max * f);
    svg.append(s("line", { x1: x0, x2: x1, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: x0 - 4, y: y + 4, class: "axis", "text-anchor": "end" }, short(max * f)));
  }
  svg.append(s("text", { x: x0, y: H - 4, class: "axis" }, `-${Math.round(span / 60)} min`));
  svg.append(s("text", { x: x1, y: H - 4, class: "axis", "text-anchor": "end" }, "now"));
  for (const x of series) {
    const pts = x.points.filter(([t]) => t >= now - span).map(([t, v]) => `${X(t).toFixed(1)},${Y(v).toFixed(1)}`);
    if (pts.length) svg.append(s("polyline", { points: pts.join(" "), class: `line ${x.class}` }));
  }
}
