// Charts of the dashboard (uPlot, served from /static/vendor): a rolling live series, and a
// broadcast's history. Each chart's container carries data-points (how many points it shows)
// and a text alternative in its aria-label, so the numbers are not only in pixels.
"use strict";

const charts = (() => {
  const COLORS = { bitrate: "#7aa7ff", viewers: "#3ecf8e", axis: "#a3a9b8", grid: "#2a2f3a" };
  const HEIGHT = 180;

  // Clock times on the time axis (uPlot's default adds a date line that crowds small charts);
  // seconds only where the ticks are less than a minute apart.
  function timeAxis() {
    return axis({
      space: 90,
      values: (_u, ticks, _axis, _space, step) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString([],
        step < 60 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" })),
    });
  }

  function axis(extra) {
    return {
      stroke: COLORS.axis,
      grid: { stroke: COLORS.grid, width: 1 },
      ticks: { stroke: COLORS.grid, width: 1 },
      ...extra,
    };
  }

  function series(label, color, unit, scale) {
    const found = {
      label, stroke: color, width: 2, fill: color + "22", spanGaps: false,
      points: { show: (u) => u.data[0].length < 3 },
      value: (_u, v) => (v === null || v === undefined ? "—" : Math.round(v) + (unit ? " " + unit : "")),
    };
    if (scale) found.scale = scale;  // an explicit undefined would detach the series from "y"
    return found;
  }

  // Tick labels: whole numbers only where the values are counts.
  const labels = (integer) => (_u, ticks) =>
    ticks.map((t) => (integer && !Number.isInteger(t) ? "" : String(Math.round(t))));

  // At least `span` seconds wide, so a few seconds of data do not get sub-second ticks.
  const atLeast = (span, last = false) => (_u, min, max) => {
    if (min === null || max === null) { const now = Date.now() / 1000; return [now - span, now]; }
    if (max - min >= span) return [min, max];
    return last ? [max - span, max] : [min - (span - (max - min)) / 2, max + (span - (max - min)) / 2];
  };

  // Keep the plot as wide as its container.
  function fit(plot, container) {
    const observer = new ResizeObserver(() => {
      const width = Math.max(container.clientWidth, 200);
      if (Math.abs(width - plot.width) > 1) plot.setSize({ width, height: HEIGHT });
    });
    observer.observe(container);
  }

  // From zero to a little above the largest value, and never below `floor`.
  const fromZero = (floor) => (_u, _min, max) => [0, Math.max(floor, (max || 0) * 1.15)];

  // A chart of one value over the last `windowSeconds` seconds; push(timeSeconds, value).
  function live(container, { label, unit, color, windowSeconds = 300, integer = false, floor = 1 }) {
    const xs = [];
    const ys = [];
    const opts = {
      width: Math.max(container.clientWidth, 200),
      height: HEIGHT,
      scales: { x: { time: true, range: atLeast(60, true) }, y: { range: fromZero(floor) } },
      series: [{}, series(label, color, unit)],
      axes: [timeAxis(), axis({ size: 60, values: labels(integer) })],
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
    };
    const plot = new uPlot(opts, [xs, ys], container);
    fit(plot, container);

    function push(t, value) {
      if (xs.length && t <= xs[xs.length - 1]) return;
      xs.push(t);
      ys.push(value);
      while (xs.length && xs[0] < t - windowSeconds) { xs.shift(); ys.shift(); }
      plot.setData([xs, ys]);
      container.dataset.points = String(xs.length);
      container.dataset.first = String(xs[0]);  // seconds: how far back the chart reaches
      container.dataset.last = value === null ? "" : String(value);
      container.setAttribute("aria-label",
        label + ": " + (value === null ? "no data" : Math.round(value) + (unit ? " " + unit : "")) + " now");
    }

    function clear() {
      xs.length = 0;
      ys.length = 0;
      plot.setData([xs, ys]);
      container.dataset.points = "0";
    }

    return { push, clear };
  }

  // A broadcast's history: viewers (left axis) and bitrate (right axis) every 10 s.
  function history(container, samples) {
    container.replaceChildren();
    const xs = samples.map((s) => Date.parse(s.sampled_at) / 1000);
    const viewers = samples.map((s) => s.viewers);
    const bitrate = samples.map((s) => s.bitrate_kbps);
    container.dataset.points = String(xs.length);
    if (!xs.length) {
      container.append(el("p", { class: "chart-empty", text: "No samples were recorded for this broadcast." }));
      container.setAttribute("aria-label", "No samples were recorded for this broadcast.");
      return;
    }
    const opts = {
      width: Math.max(container.clientWidth, 200),
      height: HEIGHT + 40,
      scales: { x: { time: true, range: atLeast(60) }, viewers: { range: fromZero(2) }, kbps: { range: fromZero(500) } },
      series: [{}, series("Viewers", COLORS.viewers, "", "viewers"), series("Bitrate (kbps)", COLORS.bitrate, "kbps", "kbps")],
      axes: [
        timeAxis(),
        axis({ scale: "viewers", size: 50, values: labels(true) }),
        axis({ scale: "kbps", side: 1, size: 60, grid: { show: false }, values: labels(false) }),
      ],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    };
    const plot = new uPlot(opts, [xs, viewers, bitrate], container);
    fit(plot, container);
    const peak = Math.max(...viewers);
    const rates = bitrate.filter((v) => v !== null);
    const mean = rates.length ? rates.reduce((a, b) => a + b, 0) / rates.length : null;
    container.setAttribute("aria-label", "Broadcast history: peak " + peak + " viewers, average bitrate "
      + (mean === null ? "unknown" : Math.round(mean) + " kbps") + ", " + xs.length + " samples");
  }

  return { live, history };
})();
