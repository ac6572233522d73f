// mme-rep console: live updates by server-sent events, and the executors plot as
// hand-drawn SVG (no library, nothing from a CDN). Served as a static file: the
// Content-Security-Policy allows no inline script.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLUMNS = ["state", "name", "namespace", "template", "image", "pods", "revision",
                   "status", "updated"];

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
    drawPlot(document.getElementById("plot"), data.series, data.now, EXECUTOR_LINES);
    drawPlot(document.getElementById("pool-plot"), data.pool, data.now, POOL_LINES);
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
})();
