"""The console's web app (Starlette): pages, live events, actions, and its security.

Identity and transport are kept apart: the app acts with the ``Kube`` it is given (the
user's kubeconfig identity here; the caller's, should it be deployed behind an
organisation's authentication), and only this module knows about HTTP.

Security: nothing is served without the token (from the URL the command printed, then a
cookie); every POST carries the CSRF token of the page it came from; every response has a
strict Content-Security-Policy (scripts and styles only from ``/static``) and no-referrer
(the URL holds the token). No secret is read, so none can be rendered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mmerep import environments
from mmerep.console import views
from mmerep.console.access import access
from mmerep.console.live import Live, LiveRegistry
from mmerep.console.metrics import plots_payload, source_for
from mmerep.environments.repair import repair
from mmerep.errors import KubeForbidden, KubeNotFound, MmerepError, UsageError
from mmerep.kube import Kube
from mmerep.profiles import Profile
from mmerep.scaler import executors as ex
from mmerep.scaler.state import read_state

STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
KEEPALIVE_SECONDS = 15.0
SCALE_STALL_SECONDS = 5.0
VSCALE_TIMEOUT = 1800.0


@dataclass
class Console:
    """What one console serves: a connection (the identity), the profile's namespace and
    limits, and its two secrets."""

    kube: Kube
    namespace: str
    profile: Profile | None = None  # its limits; None: as the deploy recorded them
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    closing: threading.Event = field(default_factory=threading.Event)
    # Long actions (a vscale rolls every executor) run in the background; their progress
    # and outcome per environment, shown live on its page.
    tasks: dict[tuple[str, str], str] = field(default_factory=dict)
    lives: LiveRegistry | None = None  # set by create_app

    def task(self, ns: str, name: str, text: str) -> None:
        self.tasks[(ns, name)] = text
        if self.lives is not None:
            self.lives.get(ns, wait=0).changed()  # the pages hear of it now

    @property
    def cookie(self) -> str:  # per port: two consoles on one host keep their own
        return f"mmerep_console_{self.port}"

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/?{urlencode({'token': self.token})}"


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class Guard(BaseHTTPMiddleware):
    """The token on every request; security headers on every response."""

    def __init__(self, app: Any, console: Console) -> None:
        super().__init__(app)
        self.console = console

    async def dispatch(self, request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        c = self.console
        response: Response
        if _same(request.query_params.get("token"), c.token):
            # First visit: keep it in a cookie and drop it from the address bar.
            query = urlencode([(k, v) for k, v in request.query_params.multi_items()
                               if k != "token"])
            response = RedirectResponse(request.url.path + (f"?{query}" if query else ""),
                                        status_code=303)
            response.set_cookie(c.cookie, c.token, httponly=True, samesite="strict",
                                path="/")
        elif not _same(request.cookies.get(c.cookie), c.token):
            response = PlainTextResponse(
                "403: missing or wrong console token; open the address `mme-rep console` "
                "printed\n", status_code=403)
        elif request.method == "POST" and not await _csrf_ok(request, c.csrf):
            response = PlainTextResponse(
                "403: missing or wrong CSRF token; reload the page and try again\n",
                status_code=403)
        else:
            response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response


MAX_FORM_BYTES = 16 * 1024


async def form_of(request: Request) -> dict[str, str]:
    """A POSTed form (urlencoded, as the pages send it; first value of each field)."""
    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        return {}
    body = await request.body()  # kept by Starlette: the endpoint reads it again
    if len(body) > MAX_FORM_BYTES:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


async def _csrf_ok(request: Request, csrf: str) -> bool:
    return _same((await form_of(request)).get("csrf"), csrf)


def _error(c: Console, exc: MmerepError, back: str) -> HTMLResponse:
    status = (403 if isinstance(exc, KubeForbidden) else 404 if isinstance(exc, KubeNotFound)
              else 400 if isinstance(exc, UsageError) else 502)
    return HTMLResponse(views.error_page(status, exc.message, exc.hint, csrf=c.csrf, back=back),
                        status_code=status)


def create_app(console: Console) -> Starlette:
    c = console
    lives = c.lives = LiveRegistry(c.kube)
    plots_source = source_for(c.kube, c.profile.prometheus if c.profile else None)

    def rows_of(live: Live) -> list[dict[str, Any]]:
        return [{**r, "access": access(r, c.profile)} for r in live.rows()]

    def namespace_of(request: Request) -> str | None:
        return None if request.query_params.get("all") else (
            request.query_params.get("ns") or c.namespace)

    def index(request: Request) -> Response:
        ns = namespace_of(request)
        live = lives.get(ns)
        return HTMLResponse(views.environments_page(
            rows_of(live), ns, csrf=c.csrf, error=live.error,
            message=request.query_params.get("done")))

    def api_environments(request: Request) -> Response:
        return JSONResponse(rows_of(lives.get(namespace_of(request))))

    def environment(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        lives.get(ns)  # start following it before the page asks for events
        try:
            status = environments.environment_status(c.kube, ns, name)
            history = environments.history(c.kube, ns, name)
        except MmerepError as exc:
            return _error(c, exc, "/")
        executors = next((comp["desired"] for comp in status["components"]
                          if comp["component"] == "executor"), None)
        return HTMLResponse(views.environment_page(
            status, history, csrf=c.csrf, executors=executors, plots_source=plots_source.kind,
            autoscaler=autoscaler_of(c, ns, name) if executors is not None else None,
            message=request.query_params.get("done")))

    async def api_plots(request: Request) -> Response:
        """Each job's CPU use and the data-lake reads (and, from Prometheus, the queue and
        pool) over the range asked for."""
        ns, name = request.path_params["ns"], request.path_params["name"]
        return JSONResponse(await asyncio.to_thread(
            plots_payload, plots_source, ns, name, request.query_params.get("range")))

    async def action(request: Request) -> Response:
        ns, name, verb = (request.path_params["ns"], request.path_params["name"],
                          request.path_params["verb"])
        fields = await form_of(request)
        back = views.env_url(ns, name)
        try:
            done = await asyncio.to_thread(_act, c, verb, ns, name, fields)
        except MmerepError as exc:
            return _error(c, exc, back)
        target = "/" if verb == "delete" else back
        return RedirectResponse(f"{target}?{urlencode({'done': done})}", status_code=303)

    async def events(request: Request) -> Response:
        ns = namespace_of(request)
        env = request.query_params.get("env")
        live = await asyncio.to_thread(lives.get, ns)

        def payload() -> str:
            if env and ns:
                data = {**live.environment(ns, env), "task": c.tasks.get((ns, env))}
                return f"event: env\ndata: {json.dumps(data)}\n\n"
            rows = {"rows": rows_of(live), "error": live.error}
            return f"event: rows\ndata: {json.dumps(rows)}\n\n"

        async def stream() -> AsyncIterator[str]:
            queue = live.subscribe()
            try:
                yield payload()
                idle = 0.0
                while not c.closing.is_set():  # ends with the server, not at its deadline
                    try:
                        await asyncio.wait_for(queue.get(), 1.0)
                    except TimeoutError:
                        idle += 1.0
                        if idle >= KEEPALIVE_SECONDS:
                            idle = 0.0
                            yield ": keep-alive\n\n"
                        continue
                    idle = 0.0
                    while not queue.empty():  # a burst of changes: one update
                        queue.get_nowait()
                    yield payload()
            finally:
                live.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            lives.close()

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/environments", api_environments),
            Route("/events", events),
            Route("/env/{ns}/{name}", environment),
            Route("/api/plots/{ns}/{name}", api_plots),
            Route("/env/{ns}/{name}/{verb:str}", action, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(Guard, console=c)],
        lifespan=lifespan,
    )


def _act(c: Console, verb: str, ns: str, name: str, form: dict[str, str]) -> str:
    """Run one action with the library functions the CLI uses; returns what was done."""
    if verb == "scale":
        return scale_executors(c, ns, name, form.get("executors", ""))
    if verb == "rollback":
        revision = _int(form.get("revision", ""), "revision")
        new = environments.rollback_to(c.kube, ns, name, revision, timeout=300)
        return f"rolled back to revision {revision} (now revision {new})"
    if verb == "vscale":
        return start_vscale(c, ns, name, form)
    if verb == "autoscaler":
        on = form.get("daemon") == "on"
        bounds = [_int(form[k], k) if form.get(k, "").strip() else None for k in ("min", "max")]
        state = ex.set_daemon(c.kube, ns, name, on, bounds[0], bounds[1],
                              ex.limits_for(c.kube, ns, name, c.profile))
        return (f"autoscaler of {name}: {'on' if on else 'off'} (min {state.minimum or 0}, "
                f"max {state.maximum if state.maximum is not None else 'profile limit'})")
    if verb == "repair":
        report = repair(c.kube, ns, name, timeout=300)
        done = "; ".join(f"{action} {what}" for action, what in report.done) or (
            f"revision {report.revision} is intact; nothing to repair")
        not_fixed = "".join(f"; not fixed: {line}" for line in report.not_fixed)
        return f"repair of {name}: {done}{not_fixed}"
    if verb == "delete":
        if form.get("confirm") != name:
            raise UsageError(f"not deleted: type the environment's name ({name}) to confirm")
        gone = environments.delete_environment(c.kube, ns, name, wait=False)
        return f"deleting {name}: {len(gone)} objects"
    raise UsageError(f"unknown action {verb!r}")


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{what} must be a whole number, not {value!r}") from None


def scale_executors(c: Console, ns: str, name: str, value: str) -> str:
    """``mme-rep scaler scale``'s validation and scale, followed until the executors run
    or stall (a few seconds: the page shows the rest live)."""
    count = ex.parse_count(value, ex.limits_for(c.kube, ns, name, c.profile))
    result = ex.scale(c.kube, ns, name, count, stall=SCALE_STALL_SECONDS)
    pending = f", {result.pending} pending" if result.pending else ""
    reason = f" ({result.reason})" if result.pending and result.reason else ""
    return (f"scaled {name}'s executors from {result.before} to {count}: "
            f"{result.running} running{pending}{reason}")


def start_vscale(c: Console, ns: str, name: str, form: dict[str, str]) -> str:
    """``mme-rep scaler vscale``: validated here (a bad value is refused at once), rolled in
    the background; the page follows the roll and shows how it ended."""
    ex.executor_deployment(c.kube, ns, name)
    res = ex.parse_resources(form.get("cpu", ""), form.get("memory", ""),
                             form.get("cpu_limit", ""), form.get("memory_limit", ""),
                             limits=ex.limits_for(c.kube, ns, name, c.profile))
    what = f"vscale of {name}'s executors to {res.cpu} CPU / {res.memory}"

    def roll() -> None:
        try:
            revision = ex.vscale(c.kube, ns, name, res, timeout=VSCALE_TIMEOUT)
            c.task(ns, name, f"{what}: done, revision {revision}")
        except MmerepError as exc:
            c.task(ns, name, f"{what} failed: {exc}")
        except Exception as exc:  # a thread's failure must reach the page, not vanish
            c.task(ns, name, f"{what} failed: {exc!r}")

    c.task(ns, name, f"{what}: rolling (new executors first, old ones drain)")
    threading.Thread(target=roll, name=f"console-vscale-{name}", daemon=True).start()
    return f"{what}: rolling"


def autoscaler_of(c: Console, ns: str, name: str) -> dict[str, Any] | None:
    """The autoscaler's settings and last decisions (its state ConfigMap), or None when
    they cannot be read."""
    try:
        state = read_state(c.kube, ns, name)
    except MmerepError:
        return None
    return {"daemon": state.daemon, "minimum": state.minimum, "maximum": state.maximum,
            "decisions": state.decisions[-5:]}
