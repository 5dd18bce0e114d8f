/** A small inline SVG line chart of job rates: no library, scales to its box. */
import { svg } from "./dom.js";

export interface Series {
  label: string;
  /** CSS class of the line (its colour). */
  cls: string;
  values: number[];
}

const H = 160;
const PAD = { top: 10, right: 8, bottom: 22, left: 40 };

function niceMax(v: number): number {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Averages per-second counts into buckets of `size` seconds. */
export function bucket(values: number[], size: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i += size) {
    const slice = values.slice(i, i + size);
    out.push(slice.reduce((a, b) => a + b, 0) / slice.length);
  }
  return out;
}

/**
 * Draws lines over a time window of `seconds` ending now, `width` pixels wide
 * (drawn at the box's own width so that its text keeps its size). The SVG carries a
 * text summary for screen readers (role=img, aria-label); the numbers also
 * appear next to the chart as text.
 */
export function rateChart(series: Series[], seconds: number, summary: string, width = 600): SVGElement {
  const W = Math.max(240, Math.round(width));
  const n = Math.max(1, ...series.map((s) => s.values.length));
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter(Number.isFinite))));
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const x = (i: number) => PAD.left + (n === 1 ? iw : (i / (n - 1)) * iw);
  const y = (v: number) => PAD.top + ih - (v / max) * ih;
  const grid = [0, 0.5, 1].map((f) =>
    svg(
      "g",
      { class: "grid" },
      svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(max * f), y2: y(max * f) }),
      svg(
        "text",
        { x: PAD.left - 6, y: y(max * f) + 4, "text-anchor": "end" },
        String(Number((max * f).toFixed(max * f < 10 ? 1 : 0))),
      ),
    ),
  );
  const minutes = seconds / 60;
  const ticks = [];
  const step = minutes > 10 ? (W < 420 ? 30 : 10) : W < 420 ? 2 : 1;
  for (let m = minutes; m >= 0; m -= step) {
    const tx = PAD.left + (m / minutes) * iw;
    ticks.push(
      svg(
        "text",
        { x: tx, y: H - 6, "text-anchor": m === 0 ? "start" : m === minutes ? "end" : "middle" },
        m === minutes ? "now" : `-${minutes - m} min`,
      ),
    );
  }
  const lines = series.map((s) => {
    // NaN marks unknown values (before counting began): the line starts after them.
    const pts = s.values
      .map((v, i) => (Number.isFinite(v) ? `${x(i).toFixed(1)},${y(v).toFixed(1)}` : ""))
      .filter(Boolean)
      .join(" ");
    // A dot on each known value: a minute or two of history is a point, not an invisible line.
    const dots = s.values.flatMap((v, i) =>
      Number.isFinite(v)
        ? [svg("circle", { class: `dot ${s.cls}`, cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5 })]
        : [],
    );
    return svg("g", null, svg("polyline", { class: `line ${s.cls}`, points: pts, fill: "none" }), ...dots);
  });
  return svg(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": summary },
    svg("title", null, summary),
    ...grid,
    svg("g", { class: "axis" }, ...ticks),
    ...lines,
  );
}

/** A line of timed samples for a sparkline: [time in ms, value]. */
export interface TimedSeries {
  /** CSS class of the line (its colour). */
  cls: string;
  points: Array<[number, number]>;
}

const SPARK = { w: 160, h: 36, pad: 3 };

/**
 * A small chart of timed samples between `from` and `to` (ms), values from 0
 * to `max`: one line per series, a dot on the last sample (a single sample is
 * a dot, not an invisible line). Labelled with `summary` for screen readers.
 */
export function sparkline(series: TimedSeries[], from: number, to: number, max: number, summary: string): SVGElement {
  const { w, h, pad } = SPARK;
  const span = Math.max(1, to - from);
  const x = (t: number) => pad + ((t - from) / span) * (w - 2 * pad);
  const y = (v: number) => h - pad - (Math.min(v, max) / max) * (h - 2 * pad);
  const lines = series.map((s) => {
    const pts = s.points.filter(([t]) => t >= from);
    const last = pts.at(-1);
    return svg(
      "g",
      null,
      svg("polyline", {
        class: `line ${s.cls}`,
        fill: "none",
        points: pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
      }),
      last
        ? svg("circle", { class: `dot ${s.cls}`, cx: x(last[0]).toFixed(1), cy: y(last[1]).toFixed(1), r: 2 })
        : null,
    );
  });
  return svg(
    "svg",
    { viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: "chart sparkline", role: "img", "aria-label": summary },
    svg("title", null, summary),
    svg("line", { class: "base", x1: pad, x2: w - pad, y1: h - pad, y2: h - pad }),
    ...lines,
  );
}
