// mme-rep console: live updates by server-sent events, and the executors plot as
// hand-drawn SVG (no library, nothing from a CDN). Served as a static file: the
// Content-Security-Policy allows no inline script.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLUMNS = ["state", "name", "namespace", "template", "image", "pods", "restarts",
                   "created", "revision", "status", "updated", "access"];

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function shortImage(image) {
    let [name, digest] = image.split("@");
    const slash = name.indexOf("/");
    if (slash > 0) {
      const first = name.slice(0, slash);
      if (first.includes(".") || first.includes(":") || first === "localhost") {
        name = ".../" + name.slice(slash + 1);
      }
    }
    return digest ? name + "@" + digest.slice(0, 12) : name;
  }

  // As views.ago says it: "5 min ago".
  function ago(stamp) {
    const then = Date.parse(stamp);
    if (isNaN(then)) return stamp;
    const seconds = Math.max(0, Math.floor((Date.now() - then) / 1000));
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"]]) {
      if (seconds >= size) return Math.floor(seconds / size) + " " + unit + " ago";
    }
    return seconds + " s ago";
  }

  function envCell(row, column) {
    const td = el("td", {class: column});
    if (column === "name") {
      const a = el("a", {href: "/env/" + encodeURIComponent(row.namespace) + "/" +
                               encodeURIComponent(row.name)}, row.name);
      td.appendChild(a);
    } else if (column === "image") {
      td.appendChild(el("span", {title: row.image}, shortImage(row.image)));
    } else if (column === "pods") {
      td.textContent = row.ready + "/" + row.desired;
      for (const c of row.per_node || []) {
        td.appendChild(el("span", {class: "per-node"}, c + ": 1 per node"));
      }
    } else if (column === "created") {
      if (row.created) {
        td.appendChild(el("time", {datetime: row.created, title: row.created},
                          ago(row.created)));
      }
    } else if (column === "access") {
      (row.access || []).forEach((a, i) => {
        if (i) td.appendChild(document.createTextNode(" "));
        td.appendChild(el("code", {}, a));
      });
    } else {
      td.textContent = String(row[column]);
    }
    return td;
  }

  function showError(message) {
    const box = document.getElementById("watch-error");
    if (!box) return;
    box.hidden = !message;
    box.textContent = message ? "The API server refused the watch: " + message : "";
  }

  function renderRows(data) {
    const tbody = document.querySelector("#envs tbody");
    if (!tbody) return;
    const fresh = document.createDocumentFragment();
    for (const row of data.rows) {
      const tr = el("tr", {"data-env": row.namespace + "/" + row.name});
      for (const c of COLUMNS) tr.appendChild(envCell(row, c));
      fresh.appendChild(tr);
    }
    tbody.replaceChildren(fresh);
    const empty = document.querySelector("p.empty");
    if (empty) empty.hidden = data.rows.length > 0;
    showError(data.error);
  }

  function renderEnvironment(data) {
    for (const w of data.workloads) {
      for (const cell of document.querySelectorAll("span.state[data-w]")) {
        if (cell.dataset.w === w.name) cell.textContent = w.done ? "Active" : "Progressing";
      }
      for (const field of ["ready", "desired"]) {
        for (const span of document.querySelectorAll("span." + field + "[data-w]")) {
          if (span.dataset.w === w.name) span.textContent = String(w[field]);
        }
      }
    }
    const task = document.getElementById("task");
    if (task) {
      task.hidden = !data.task;
      task.textContent = data.task || "";
    }
    showError(data.error);
    if (!executorsFromPrometheus) {
      drawPlot(document.getElementById("plot"), data.series, data.now, EXECUTOR_LINES);
    }
    if (!poolFromPrometheus) {
      drawPlot(document.getElementById("pool-plot"), data.pool, data.now, POOL_LINES);
    }
  }

  // -- the monitor's plots: fetched every few seconds over the range chosen -------------

  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000"];
  const POOL_COLOURS = {idle: "#d62728", running: "#9467bd", busy: "#ff7f0e",
                        executors: "#1f77b4"};
  const PLOTS_EVERY_MS = 5000;
  const EXECUTOR_COLOURS = {desired: "#1f77b4", current: "#17becf", ready: "#2ca02c",
                            busy: "#ff7f0e"};
  let poolFromPrometheus = false;
  let executorsFromPrometheus = false;

  function fmt(v) {
    return Math.abs(v) >= 100 || v === Math.round(v) ? String(Math.round(v)) : v.toFixed(2);
  }

  // Lines of [time, value] points over [now - seconds, now]; one colour per line.
  function drawLines(plot, lines, now, seconds, colours) {
    if (!plot) return;
    const W = 640, H = 220, L = 40, R = 130, T = 10, B = 30;
    plot.replaceChildren();
    // From a little before the first point when the data covers less than the range asked
    // for (at least the last 30 s), else the whole range.
    const first = Math.min(now, ...lines.flatMap(l => l.points.map(p => p[0])));
    const t0 = Math.max(now - seconds, Math.min(first - 0.1 * (now - first), now - 30));
    seconds = now - t0;
    const values = lines.flatMap(l => l.points.map(p => p[1]));
    const ymax = Math.max(values.length ? Math.max(...values) : 0, 1e-9) * 1.1 || 1;
    const x = t => L + (W - L - R) * Math.max(0, t - t0) / seconds;
    const y = v => H - B - (H - T - B) * v / ymax;
    plot.appendChild(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888"}));
    plot.appendChild(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#888"}));
    for (const v of [0, ymax]) {
      plot.appendChild(svg("text", {x: L - 6, y: y(v) + 4, "text-anchor": "end",
                                    "font-size": 11}, fmt(v)));
    }
    const span = seconds >= 3600 ? +(seconds / 3600).toFixed(1) + " h"
      : seconds >= 120 ? Math.round(seconds / 60) + " min" : Math.round(seconds) + " s";
    plot.appendChild(svg("text", {x: L, y: H - 8, "font-size": 11}, "-" + span));
    plot.appendChild(svg("text", {x: W - R, y: H - 8, "text-anchor": "end",
                                  "font-size": 11}, "now"));
    if (!lines.some(l => l.points.length)) {
      plot.appendChild(svg("text", {x: (W - R + L) / 2, y: H / 2, "text-anchor": "middle",
                                    "font-size": 12, class: "empty"}, "no data yet"));
      return;
    }
    lines.forEach((line, n) => {
      const colour = (colours && colours[line.label]) || PALETTE[n % PALETTE.length];
      const pts = line.points.filter(p => p[0] >= t0);
      if (!pts.length) return;
      const d = pts.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " +
                                  y(p[1]).toFixed(1)).join(" ");
      const last = pts[pts.length - 1][1];
      plot.appendChild(svg("path", {d: d, fill: "none", stroke: colour, "stroke-width": 2,
                                    class: "series", "data-label": line.label,
                                    "data-points": pts.length, "data-last": last,
                                    "data-first": pts[0][0]}));
      if (pts.length === 1) {  // one sample: a dot, not an invisible line
        plot.appendChild(svg("circle", {cx: x(pts[0][0]), cy: y(last), r: 3, fill: colour}));
      }
      if (n < 11) {
        plot.appendChild(svg("text", {x: W - R + 8, y: T + 14 + 16 * n, fill: colour,
                                      "font-size": 11}, line.label + " " + fmt(last)));
      }
    });
  }

  function fetchPlots() {
    const url = document.body.dataset.plots;
    const range = document.getElementById("range");
    const state = document.getElementById("plots-state");
    fetch(url + "?range=" + encodeURIComponent(range.value),
          {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(r => r.json())
      .then(data => {
        state.textContent = data.error ? "not available: " + data.error : "";
        const plots = data.plots || {};
        drawLines(document.getElementById("cpu-plot"), (plots.cpu || {}).lines || [],
                  data.now, data.range);
        drawLines(document.getElementById("datalake-plot"),
                  (plots.datalake || {}).lines || [], data.now, data.range);
        const pool = (plots.pool || {}).lines || [];
        if (data.source === "prometheus" && pool.some(l => l.points.length)) {
          poolFromPrometheus = true;
          const about = document.getElementById("pool-about");
          if (about) about.textContent = "Idle and running jobs, busy executors and " +
            "executors in the pool, as the monitor exported them (from Prometheus).";
          drawLines(document.getElementById("pool-plot"), pool, data.now, data.range,
                    POOL_COLOURS);
        }
        const executors = (plots.executors || {}).lines || [];
        if (data.source === "prometheus" && executors.some(l => l.points.length)) {
          executorsFromPrometheus = true;
          const about = document.getElementById("executors-about");
          if (about) about.textContent = "Desired (what the autoscaler wants; while it " +
            "is off, the Deployment's replicas), current (the Deployment's replicas), " +
            "ready and busy executors, as the autoscaler exported them (from Prometheus).";
          drawLines(document.getElementById("plot"), executors, data.now, data.range,
                    EXECUTOR_COLOURS);
        }
        document.body.dataset.range = String(data.range);
        document.body.dataset.plotted = String(Number(document.body.dataset.plotted || 0) + 1);
      })
      .catch(err => { state.textContent = "not available: " + err; });
  }

  function startPlots() {
    if (!document.body.dataset.plots) return;
    const range = document.getElementById("range");
    range.addEventListener("change", fetchPlots);
    fetchPlots();
    setInterval(fetchPlots, PLOTS_EVERY_MS);
  }

  // [index in a point, label, colour]; a point is [time, value, value, ...].
  const EXECUTOR_LINES = [[1, "desired", "#1f77b4"], [2, "ready", "#2ca02c"]];
  const POOL_LINES = [[1, "idle", "#d62728"], [2, "running", "#9467bd"],
                      [3, "busy", "#ff7f0e"], [4, "executors", "#1f77b4"]];

  // Step lines of the series against time, up to now.
  function drawPlot(plot, series, now, lines) {
    if (!plot) return;
    const W = 640, H = 220, L = 40, R = 110, T = 10, B = 30;
    plot.replaceChildren();
    const points = series.length ? series.slice() : [[now, ...lines.map(() => 0)]];
    // From a little before the first change (at least the last 30 s) to now.
    const t0 = Math.min(points[0][0] - 0.1 * (now - points[0][0]), now - 30);
    const tmax = Math.max(now, t0 + 1);
    const ymax = Math.max(1, ...points.map(p => Math.max(...lines.map(l => p[l[0]]))));
    const x = t => L + (W - L - R) * (t - t0) / (tmax - t0);
    const y = v => H - B - (H - T - B) * v / ymax;
    plot.appendChild(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888"}));
    plot.appendChild(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#888"}));
    for (const v of [0, ymax]) {
      plot.appendChild(svg("text", {x: L - 6, y: y(v) + 4, "text-anchor": "end",
                                    "font-size": 11}, String(v)));
    }
    const ago = Math.round(tmax - t0);
    plot.appendChild(svg("text", {x: L, y: H - 8, "font-size": 11}, "-" + ago + " s"));
    plot.appendChild(svg("text", {x: W - R, y: H - 8, "text-anchor": "end",
                                  "font-size": 11}, "now"));
    lines.forEach(([index, label, colour], n) => {
      let d = "";
      let last = null;
      for (const p of points) {
        d += (d ? " L" : "M") + x(p[0]).toFixed(1) + " " +
             (last === null ? y(p[index]) : y(last)).toFixed(1);
        d += " L" + x(p[0]).toFixed(1) + " " + y(p[index]).toFixed(1);
        last = p[index];
      }
      d += " L" + x(tmax).toFixed(1) + " " + y(last).toFixed(1);
      plot.appendChild(svg("path", {d: d, fill: "none", stroke: colour,
                                    "stroke-width": n === 0 ? 3 : 2, class: "series " + label,
                                    "data-last": last}));
      plot.appendChild(svg("text", {x: W - R + 8, y: T + 14 + 16 * n, fill: colour,
                                    "font-size": 12}, label + " " + last));
    });
  }

  function connect() {
    const url = document.body.dataset.events;
    const status = document.getElementById("live");
    if (!url) {  // a page with nothing live (an error page)
      status.textContent = "";
      return;
    }
    const source = new EventSource(url);
    source.addEventListener("open", () => {
      status.textContent = "live";
      document.body.dataset.live = "1";
    });
    source.addEventListener("error", () => {
      status.textContent = "reconnecting…";
      document.body.dataset.live = "0";
    });
    source.addEventListener("rows", e => renderRows(JSON.parse(e.data)));
    source.addEventListener("env", e => {
      renderEnvironment(JSON.parse(e.data));
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    });
  }

  document.addEventListener("DOMContentLoaded", connect);
  document.addEventListener("DOMContentLoaded", startPlots);
})();
