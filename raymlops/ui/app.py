"""The web UI as a FastAPI app: :func:`create_app` (``raymlops ui`` serves it with uvicorn).

Read-only: every route is a ``GET`` that reads the home folder (and, for deployments and
monitors, the live cluster) through the same functions the CLI uses. An unknown id answers a
404 page naming it, a bad query parameter a 400 page naming the parameter, an unreachable
cluster a page that says so; the rest of the UI works without Ray. A request whose ``Host`` is
not one of ``hosts`` (by default this machine's loopback names) gets a 400 page: a web page the
user opens elsewhere cannot point its own host name at 127.0.0.1 and read the UI (DNS rebinding).
A home whose database is gone or unreadable answers a 503 page naming it.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from raymlops import audit
from raymlops.data.snapshot import list_snapshots
from raymlops.exceptions import NotFound, RaymlopsError, ValidationError
from raymlops.pipeline.history import list_runs
from raymlops.registry.registry import get_model, list_models
from raymlops.store.home import Store
from raymlops.ui import audit_page, live, models, runs, snapshots, webhooks_page
from raymlops.ui.page import Page, error_page, esc, link, page, table, url, when

__all__ = ["LOOPBACK_HOSTS", "create_app"]

#: the names a browser on this machine reaches a loopback-bound UI by
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port, brackets or trailing dot, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return (header.rsplit(":", 1)[0] if header.count(":") == 1 else header).rstrip(".")


def _html(p: Page) -> HTMLResponse:
    return HTMLResponse(page(p))


def overview(store: Store, address: str | None) -> Page:
    all_runs = list_runs(store.metadata, limit=5)
    snaps = list_snapshots(store)
    versions = list_models(store)
    ok, message = audit.verify(store.metadata)
    cluster = (f"cluster {esc(address)}: see {link('/deployments', 'deployments and monitors')}" if address else
               f"no cluster configured (RAY_ADDRESS unset): {link('/deployments', 'deployments')} shows the home "
               "folder")
    body = [f'<h1>raymlops</h1><p class="meta">home <code id="home">{esc(store.home)}</code>; {cluster}</p>',
            f'<p class="note {"ok" if ok else "bad"}">audit: {esc(message)} ({link("/audit", "log")})</p>',
            f"<h2>{link('/runs', 'Recent runs')}</h2>" + table(
                ["run", "status", "pipeline", "started"],
                [[link(url("runs", r["run"]), r["run"]), esc(r["status"]), esc(r["pipeline"]),
                  esc(when(r["started_at"]))] for r in all_runs], empty="no runs recorded"),
            f"<h2>{link('/snapshots', 'Snapshots')}</h2><p>{len(snaps)} snapshot(s)"
            + (f", newest {link(url('snapshots', snaps[-1]['id']), snaps[-1]['id'][:12])}" if snaps else "") + "</p>",
            f"<h2>{link('/models', 'Models')}</h2><p>{len(versions)} version(s): "
            + (", ".join(runs.model_link(v.id) for v in versions[-10:]) or "none") + "</p>"]
    return Page("Overview", "".join(body))


def create_app(home: str | Path | None, ray_address: str | None = None, *,
               hosts: Collection[str] | None = LOOPBACK_HOSTS) -> FastAPI:
    """The UI over the existing home folder ``home`` (``None``: ``$RAYMLOPS_HOME``, else
    ``./.raymlops``; a folder that is no home is a NotFound, never made one) and, when
    ``ray_address`` is given (or this process already joined a Ray), the live cluster. ``hosts``:
    the ``Host`` names it answers (``None``: any, for a UI bound to a network interface)."""
    store = Store.open(home, create=False)
    app = FastAPI(title="raymlops", docs_url=None, redoc_url=None, openapi_url=None)
    allowed = None if hosts is None else {_host_name(h) for h in hosts}
    page_route = functools.partial(app.api_route, methods=["GET", "HEAD"], response_class=HTMLResponse)

    @app.middleware("http")
    async def _same_host(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        header = request.headers.get("host")
        if allowed is not None and header is not None and _host_name(header) not in allowed:
            return HTMLResponse(error_page(400, f"Host {header!r} is not this UI's: it answers to "
                                                f"{', '.join(sorted(allowed))} only"), status_code=400)
        return await call_next(request)

    @app.exception_handler(sqlite3.Error)
    async def _database(request: Request, exc: sqlite3.Error) -> HTMLResponse:
        return HTMLResponse(error_page(503, f"the home's database {store.home / 'metadata.db'}: {exc} (was the "
                                            "home folder moved or deleted?)"), status_code=503)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> HTMLResponse:
        return HTMLResponse(error_page(404, str(exc)), status_code=404)

    @app.exception_handler(ValidationError)
    async def _bad(request: Request, exc: ValidationError) -> HTMLResponse:
        return HTMLResponse(error_page(400, str(exc)), status_code=400)

    @app.exception_handler(RaymlopsError)
    async def _failed(request: Request, exc: RaymlopsError) -> HTMLResponse:
        return HTMLResponse(error_page(503, str(exc)), status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _bad_param(request: Request, exc: RequestValidationError) -> HTMLResponse:
        err = exc.errors()[0] if exc.errors() else {}
        name = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
        return HTMLResponse(error_page(400, f"query parameter {name!r}: {err.get('msg', 'invalid')}"), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        message = f"no page at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return HTMLResponse(error_page(exc.status_code, message), status_code=exc.status_code)

    @page_route("/")
    def index() -> HTMLResponse:
        return _html(overview(store, ray_address))

    @page_route("/runs")
    def runs_list(status: str | None = None) -> HTMLResponse:
        return _html(runs.runs_page(store, status))

    @page_route("/runs/{run_id}")
    def run_detail(run_id: str) -> HTMLResponse:
        return _html(runs.run_page(store, run_id))

    @page_route("/snapshots")
    def snapshot_list() -> HTMLResponse:
        return _html(snapshots.snapshots_page(store))

    @page_route("/snapshots/{snap_id}")
    def snapshot_detail(snap_id: str, against: str | None = None) -> HTMLResponse:
        return _html(snapshots.snapshot_page(store, snap_id, against))

    @page_route("/models")
    def model_list() -> HTMLResponse:
        return _html(models.models_page(store))

    @page_route("/models/{name}")
    def model_detail(name: str) -> Response:
        if ":" in name or "@" in name:  # the CLI's NAME:vN or NAME@ALIAS: that version's page
            try:
                version = get_model(store, name)
            except (NotFound, ValidationError):
                raise NotFound(f"model version {name!r} not found") from None
            model, _, number = version.id.partition(":")
            return RedirectResponse(url("models", model, number), status_code=307)
        return _html(models.model_page(store, name))

    @page_route("/models/{name}/{version}")
    def version_detail(name: str, version: str) -> HTMLResponse:
        return _html(models.version_page(store, name, version))

    @page_route("/deployments")
    def deployments() -> HTMLResponse:
        return _html(live.deployments_page(store, ray_address))

    @page_route("/monitors/{route}")
    def monitor(route: str) -> HTMLResponse:
        return _html(live.monitor_page(route, ray_address))

    @page_route("/monitors/{route}/report")
    def monitor_report(route: str) -> HTMLResponse:
        return HTMLResponse(live.monitor_report(route, ray_address))

    @page_route("/webhooks")
    def webhooks() -> HTMLResponse:
        return _html(webhooks_page.webhooks_page(store))

    @page_route("/audit")
    def audit_log(action: str | None = None, actor: str | None = None, since: str | None = None,
                  until: str | None = None, id: str | None = None) -> HTMLResponse:
        return _html(audit_page.audit_page(store, action, actor, since, until, id))

    return app
