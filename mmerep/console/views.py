"""The console's pages as HTML strings: pure functions of plain data, escaped throughout.

No inline script or style (the Content-Security-Policy forbids both): behaviour comes from
``/static/console.js``, which finds what it needs in ``data-`` attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

TABLE_COLUMNS = ("state", "name", "namespace", "template", "image", "pods", "restarts",
                 "created", "revision", "status", "updated", "access")


def ago(stamp: str, now: float | None = None) -> str:
    """``2026-12-01T22:00:00Z`` as "5 min ago" (console.js says it the same way)."""
    import time
    from datetime import datetime

    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return stamp
    seconds = max(0, int((time.time() if now is None else now) - then))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def short_image(image: str) -> str:
    """Without the registry host and with a short digest, as ``env list`` shows it."""
    name, _, digest = image.partition("@")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = ".../" + rest
    return f"{name}@{digest[:19]}" if digest else name


def env_url(namespace: str, name: str) -> str:
    return f"/env/{quote(namespace, safe='')}/{quote(name, safe='')}"


def page(title: str, body: str, *, csrf: str, attrs: dict[str, str] | None = None) -> str:
    data = "".join(f' data-{k}="{escape(v)}"' for k, v in (attrs or {}).items())
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)} · mme-rep console</title>"
        f'<meta name="csrf" content="{escape(csrf)}">'
        '<link rel="stylesheet" href="/static/console.css">'
        '<script src="/static/console.js" defer></script></head>'
        f'<body{data}><header><a href="/">mme-rep console</a>'
        '<span id="live" class="live">connecting…</span></header>'
        f'<main><div id="watch-error" class="error" hidden></div>{body}</main></body></html>')


def row_cells(row: dict[str, Any]) -> str:
    cells = {
        "state": escape(row["state"]),
        "name": f'<a href="{escape(env_url(row["namespace"], row["name"]))}">'
                f'{escape(row["name"])}</a>',
        "namespace": escape(row["namespace"]),
        "template": escape(row["template"]),
        "image": f'<span title="{escape(row["image"])}">{escape(short_image(row["image"]))}'
                 "</span>",
        "pods": f'{row["ready"]}/{row["desired"]}' + "".join(
            f'<span class="per-node">{escape(c)}: 1 per node</span>'
            for c in row.get("per_node", [])),
        "restarts": str(row.get("restarts", 0)),
        "created": f'<time datetime="{escape(row.get("created", ""))}" '
                   f'title="{escape(row.get("created", ""))}">{escape(ago(row["created"]))}'
                   "</time>" if row.get("created") else "",
        "access": " ".join(f"<code>{escape(a)}</code>" for a in row.get("access", [])),
        "revision": str(row["revision"]),
        "status": escape(row["status"]),
        "updated": escape(row["updated"]),
    }
    return "".join(f'<td class="{c}">{cells[c]}</td>' for c in TABLE_COLUMNS)


def environments_page(rows: list[dict[str, Any]], namespace: str | None, *, csrf: str,
                      error: str | None = None, message: str | None = None) -> str:
    where = f"namespace {namespace}" if namespace else "all namespaces"
    other = ('<a href="/?all=1">all namespaces</a>' if namespace
             else '<a href="/">the profile\'s namespace</a>')
    head = "".join(f"<th>{c}</th>" for c in TABLE_COLUMNS)
    body_rows = "".join(
        f'<tr data-env="{escape(r["namespace"])}/{escape(r["name"])}">{row_cells(r)}</tr>'
        for r in rows)
    empty = "" if rows else '<p class="empty">No environments yet.</p>'
    warn = f'<p class="error">{escape(error)}</p>' if error else ""
    if message:
        warn += f'<p class="note" id="message">{escape(message)}</p>'
    events = "/events?" + urlencode({"all": "1"} if namespace is None else {"ns": namespace})
    return page("Environments", f"<h1>Environments in {escape(where)}</h1><p>Show {other}.</p>"
                f'{warn}<table id="envs"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body_rows}</tbody></table>{empty}",
                csrf=csrf, attrs={"events": events, "page": "environments"})


def _form(action: str, csrf: str, inner: str, cls: str = "") -> str:
    return (f'<form method="post" action="{escape(action)}" class="{cls}">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">{inner}</form>')


def _table(cid: str, columns: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table id="{cid}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def environment_page(status: dict[str, Any], history: list[dict[str, Any]], *, csrf: str,
                     executors: int | None, autoscaler: dict[str, Any] | None = None,
                     message: str | None = None, plots_source: str = "exporter") -> str:
    ns, name = status["namespace"], status["name"]
    base = env_url(ns, name)
    comps = _table("components", ["role", "name", "kind", "state", "ready", "desired",
                                  "restarts", "ports"], (
        [escape(c["component"] or c["name"]), escape(c["name"]), escape(c["kind"]),
         f'<span class="state" data-w="{escape(c["name"])}">{escape(c["state"])}</span>',
        f'<span class="ready" data-w="{escape(c["name"])}">{c["ready"]}'
         "</span>", f'<span class="desired" data-w="{escape(c["name"])}">{c["desired"]}</span>',
         str(c["restarts"]), escape(", ".join(c["ports"]) or "-")]
        for c in status["components"]))
    warnings = _table("warnings", ["time", "object", "reason", "message"], (
        [escape(w["time"] or ""), escape(w["object"]), escape(w["reason"] or ""),
         escape(w["message"] or "")] for w in status["warnings"])) if status["warnings"] else (
        "<p>No recent warnings.</p>")
    stopped = _table("stopped", ["component", "pod", "reason", "message"], (
        [escape(s["component"]), escape(s["pod"]), escape(s["reason"] or ""),
         escape(s["message"] or "")] for s in status["stopped"])) if status["stopped"] else ""
    revisions = _table("history", ["revision", "status", "time", "template", "image", "note",
                                   ""], (
        [str(h["revision"]), escape(h["status"]), escape(h["time"]), escape(h["template"]),
         escape(short_image(h["image"])), escape(h.get("note", "")),
         _form(f"{base}/rollback", csrf,
               f'<input type="hidden" name="revision" value="{h["revision"]}">'
               '<button type="submit">roll back to this</button>', "inline")]
        for h in reversed(history)))
    scale = _form(f"{base}/scale", csrf,
                  '<label>executors <input type="number" name="executors" id="executors" '
                  f'min="0" required value="{executors if executors is not None else 0}">'
                  '</label> <button type="submit" id="scale">scale</button>'
                  ) if executors is not None else "<p>This environment has no executors.</p>"
    delete = _form(f"{base}/delete", csrf,
                   f'<label>type <b>{escape(name)}</b> to confirm <input name="confirm" '
                   'id="confirm" autocomplete="off"></label> '
                   '<button type="submit" id="delete" class="danger">delete</button>')
    note = f'<p class="note" id="message">{escape(message)}</p>' if message else ""
    monitor = status.get("monitor")
    health = ""
    if monitor:
        findings = "".join(
            f"<li>{escape(str(f.get('message', f)) if isinstance(f, dict) else str(f))}</li>"
            for f in monitor.get("findings", []))
        health = (f'<p id="monitor">{escape(monitor["line"])}</p>'
                  + (f'<ul id="findings">{findings}</ul>' if findings else ""))
    health += _form(f"{base}/repair", csrf,
                    '<button type="submit" id="repair">repair</button> re-applies what '
                    "drifted from the current revision and restarts stuck pods "
                    "(as <code>mme-rep env repair</code>)")
    if executors is not None:
        scale += _form(f"{base}/vscale", csrf,
                       '<label>CPU <input name="cpu" id="vcpu" size="5" required></label> '
                       '<label>memory <input name="memory" id="vmemory" size="6" required>'
                       '</label> <label>limits: CPU <input name="cpu_limit" size="5"></label> '
                       '<label>memory <input name="memory_limit" size="6"></label> '
                       '<button type="submit" id="vscale">vscale</button> (rolls every '
                       "executor: new ones first, old ones drain)")
        scale += '<p id="task" class="note" hidden></p>'
    if autoscaler is not None:
        bounds = (f"between {autoscaler['minimum']} and {autoscaler['maximum']} executors"
                  if autoscaler["minimum"] is not None else "no bounds set")
        scale += (f'<p id="autoscaler">Autoscaler: <b>{"on" if autoscaler["daemon"] else "off"}'
                  f"</b>, {escape(bounds)}.</p>")
        on = autoscaler["daemon"]
        low, high = (("" if autoscaler[k] is None else str(autoscaler[k]))
                     for k in ("minimum", "maximum"))
        scale += _form(f"{base}/autoscaler", csrf,
                       '<label>autoscaler <select name="daemon" id="daemon">'
                       f'<option value="on"{" selected" if on else ""}>on</option>'
                       f'<option value="off"{"" if on else " selected"}>off</option></select>'
                       '</label> <label>min <input type="number" name="min" id="dmin" min="0" '
                       f'value="{low}">'
                       '</label> <label>max <input type="number" name="max" id="dmax" min="0" '
                       f'value="{high}">'
                       '</label> <button type="submit" id="set-daemon">set</button>')
        if autoscaler["decisions"]:
            scale += _table("decisions", ["from", "to", "reason"], (
                [str(d.get("from", "")), str(d.get("to", "")), escape(str(d.get("reason", "")))]
                for d in reversed(autoscaler["decisions"])))
    # The plots are the executors' and their jobs': none for an environment without them.
    plots = ("<h2>Executors over time</h2><p id=\"executors-about\">Desired and ready "
             "executors, as the API server reports the Deployment while this console runs."
             "</p>"
             '<svg id="plot" width="640" height="220" viewBox="0 0 640 220" '
             'role="img" aria-label="executors desired and ready over time"></svg>'
             "<h2>Queue and pool over time</h2><p id=\"pool-about\">Idle and running jobs, "
             "busy executors and executors in the pool, as the autoscaler observes them "
             "each interval (while it runs).</p>"
             '<svg id="pool-plot" width="640" height="220" viewBox="0 0 640 220" '
             'role="img" aria-label="queue and pool over time"></svg>'
             + monitor_plots(plots_source)) if executors is not None else ""
    body = (f"<h1>Environment {escape(name)} <small>in {escape(ns)}</small></h1>{note}"
            f"<h2>Components</h2>{comps}{stopped}<h2>Recent warnings</h2>{warnings}"
            f"{plots}"
            f"<h2>Scale</h2>{scale}<h2>Health</h2>{health}<h2>History</h2>{revisions}"
            f"<h2>Delete</h2>{delete}")
    events = "/events?" + urlencode({"ns": ns, "env": name})
    attrs = {"events": events, "page": "environment"}
    if executors is not None:
        attrs["plots"] = f"/api/plots/{quote(ns, safe='')}/{quote(name, safe='')}"
    return page(f"{name} in {ns}", body, csrf=csrf, attrs=attrs)


PLOT_RANGES = (("15m", "15 minutes"), ("1h", "hour"), ("6h", "6 hours"), ("24h", "24 hours"))


def _svg(pid: str, label: str) -> str:
    return (f'<svg id="{pid}" width="640" height="220" viewBox="0 0 640 220" role="img" '
            f'aria-label="{escape(label)}"></svg>')


def monitor_plots(source: str) -> str:
    """The monitor's plots: each job's CPU utilisation and the data-lake reads, over a
    range the user picks (history from Prometheus, or kept since the page first asked)."""
    where = ("from Prometheus (the profile's <code>prometheus</code>)" if source == "prometheus"
             else "read from the monitor in the scheduler pod while this console runs "
             "(name a Prometheus in the profile for a longer history)")
    options = "".join(f'<option value="{k}"{" selected" if k == "1h" else ""}>last {v}</option>'
                      for k, v in PLOT_RANGES)
    return ('<h2>Jobs and data lake</h2>'  # noqa: S608 - HTML <select>, not SQL
            f'<p>As the monitor measures them, {where}. <label>Show the '
            f'<select id="range">{options}</select></label> '
            '<span id="plots-state" class="note"></span></p>'
            "<h3>CPU utilisation of the running jobs (the least busy ones)</h3>"
            + _svg("cpu-plot", "CPU utilisation of the running jobs over time")
            + "<h3>Aggregated read throughput from the data lake (MB/s)</h3>"
            + _svg("datalake-plot", "data-lake read throughput over time"))


def error_page(status: int, message: str, hint: str | None, *, csrf: str,
               back: str = "/") -> str:
    title = {403: "Not allowed", 404: "Not found"}.get(status, "Failed")
    what = ("The API server refused this with your identity (RBAC decides what you may do):"
            if status == 403 else "It did not work:")
    hint_html = f'<p class="hint">{escape(hint)}</p>' if hint else ""
    return page(title, f'<h1>{title}</h1><p>{what}</p><pre class="error" id="api-message">'
                f"{escape(message)}</pre>{hint_html}"
                f'<p><a href="{escape(back)}">back</a></p>', csrf=csrf,
                attrs={"page": "error"})
