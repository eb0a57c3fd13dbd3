// Line charts as inline SVG, drawn here (no library): time on x, lines per series, dashed
// target lines, a legend in text, and a <title>/<desc> so a screen reader gets the numbers.

import { el } from "./api.js";

const W = 640;
const H = 220;
const PAD = { left: 56, right: 24, top: 12, bottom: 28 };

function ticks(min, max, count) {
  if (max === min) return [min];
  const step = (max - min) / (count - 1);
  return Array.from({ length: count }, (_, i) => min + i * step);
}

function label(value, unit) {
  const abs = Math.abs(value);
  const text = abs >= 100 ? value.toFixed(0) : abs >= 1 ? value.toFixed(2) : value.toPrecision(2);
  return unit ? `${text}${unit}` : text;
}

function clock(ms) {
  const date = new Date(ms);
  return `${String(date.getHours()).padStart(2, "0")}:${String(date.getMinutes()).padStart(2, "0")}`;
}

/// `series`: [{name, points: [[time ms, value]], kind}] (kind picks the stroke: a, b, c...);
/// `targets`: [{name, value}]; `unit` follows each y label.
export function lineChart({ title, series, targets = [], unit = "", yMin }) {
  const values = series.flatMap((s) => s.points.map((p) => p[1])).concat(targets.map((t) => t.value));
  const times = series.flatMap((s) => s.points.map((p) => p[0]));
  const svg = el("svg:svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "chart",
    role: "img",
    "aria-label": title,
    preserveAspectRatio: "xMidYMid meet",
  });
  const summary = series
    .map((s) => {
      const last = s.points[s.points.length - 1];
      return last ? `${s.name}: latest ${label(last[1], unit)}` : `${s.name}: no points`;
    })
    .concat(targets.map((t) => `${t.name}: ${label(t.value, unit)}`))
    .join("; ");
  svg.append(el("svg:title", {}, title), el("svg:desc", {}, summary));
  if (!times.length) {
    svg.append(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "no data yet"));
    return figure(svg, title, series, targets);
  }
  let lo = yMin ?? Math.min(...values);
  let hi = Math.max(...values);
  if (hi === lo) hi = lo + (Math.abs(lo) || 1);
  lo = Math.min(lo, yMin ?? lo);
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const x = (t) => PAD.left + (t1 === t0 ? (W - PAD.left - PAD.right) / 2 : ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right));
  const y = (v) => H - PAD.bottom - ((v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  for (const v of ticks(lo, hi, 4)) {
    svg.append(
      el("svg:line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }),
      el("svg:text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, label(v, unit)),
    );
  }
  for (const t of ticks(t0, t1, t1 === t0 ? 1 : 4)) {
    svg.append(el("svg:text", { x: x(t), y: H - 8, "text-anchor": "middle", class: "axis" }, clock(t)));
  }
  targets.forEach((target, i) => {
    svg.append(
      el("svg:line", {
        x1: PAD.left,
        x2: W - PAD.right,
        y1: y(target.value),
        y2: y(target.value),
        class: `target t${i}`,
      }),
    );
  });
  series.forEach((s, i) => {
    const kind = s.kind ?? String.fromCharCode(97 + i);
    const points = s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.append(el("svg:polyline", { points, class: `line ${kind}`, "data-series": s.name }));
    for (const [t, v] of s.points.length <= 40 ? s.points : []) {
      svg.append(
        el(
          "svg:circle",
          { cx: x(t), cy: y(v), r: 3, class: `dot ${kind}` },
          el("svg:title", {}, `${s.name} ${label(v, unit)} at ${new Date(t).toLocaleString()}`),
        ),
      );
    }
  });
  return figure(svg, title, series, targets);
}

function figure(svg, title, series, targets) {
  const legend = el(
    "ul",
    { className: "legend" },
    series.map((s, i) =>
      el("li", {}, el("span", { className: `swatch ${s.kind ?? String.fromCharCode(97 + i)}`, "aria-hidden": "true" }), ` ${s.name} (line)`),
    ),
    targets.map((t, i) => el("li", {}, el("span", { className: `swatch target t${i}`, "aria-hidden": "true" }), ` ${t.name} (dashed)`)),
  );
  return el("figure", { className: "figure" }, svg, el("figcaption", {}, title), legend);
}
