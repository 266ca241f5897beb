"""The FastAPI application."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from rq import Worker
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from scanner_service import __version__
from scanner_service.api.routes import admin, archive, batches, exports, items, session, station, stream, web
from scanner_service.api.schemas import ErrorBody, Health, RequestIssue, RowIssue, error_responses, error_schemas
from scanner_service.archive.archival_code import InvalidArchivalCode
from scanner_service.archive.catalogue_import import CatalogueImportError
from scanner_service.archive.db import session_scope
from scanner_service.exceptions import AccountLocked, ScanstationError
from scanner_service.settings import Settings
from scanner_service.station import queue as q

MAX_LISTED_ISSUES = 20  # a body with a thousand wrong fields still gets a readable 'detail'


def create_app(settings: Settings) -> FastAPI:
    """The API for one station's settings."""
    app = FastAPI(
        title="scanstation",
        version=__version__,
        description="Scan station API: batches and pages as scanned; items (件) filed under their 档号 with their "
        "searchable PDF/A, page text and hOCR; search; events; the access log. A Bearer token (systems) or a "
        "person's login cookie (POST /api/session; changes also need X-CSRF-Token) on all but /healthz.",
    )
    app.state.settings = settings
    app.state.stopping = lambda: False  # the server that runs the app sets its own: open event streams end with it
    connection = q.connect(settings)

    @app.exception_handler(ScanstationError)
    async def _station_error(_request: Request, exc: ScanstationError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        if isinstance(exc, AccountLocked):
            headers = {"Retry-After": str(exc.retry_after)}
        body = ErrorBody(error=exc.code, detail=exc.message)
        if exc.reason_code != exc.code:
            body.reason = exc.reason_code
        if isinstance(exc, InvalidArchivalCode):
            body.part = exc.part
        if isinstance(exc, CatalogueImportError):
            body.errors = [
                RowIssue(row=e.row, column=e.column, message=e.message, message_zh=e.zh or None) for e in exc.errors
            ]
        return _error(body, exc.http_status, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own shape ({"detail": [...]}) would be a second error shape; every error has ErrorBody's.
        issues: list[RequestIssue | RowIssue] = [
            RequestIssue(loc=[p if isinstance(p, int) else str(p) for p in e["loc"]], msg=e["msg"], type=e["type"])
            for e in exc.errors()
        ]
        said = "; ".join(
            f"{'.'.join(map(str, i.loc))}: {i.msg}" for i in issues[:MAX_LISTED_ISSUES] if isinstance(i, RequestIssue)
        )
        if len(issues) > MAX_LISTED_ISSUES:
            said += f"; … and {len(issues) - MAX_LISTED_ISSUES} more"
        return _error(ErrorBody(error="invalid_request", detail=said, errors=issues), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths (404), methods (405) and unreadable bodies (400) come from Starlette.
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route of that path only; GET and PUT of
            # /api/items/{code} are two routes.
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return _error(ErrorBody(error=code, detail=str(exc.detail)), exc.status_code, headers)

    @app.get(
        "/healthz",
        response_model=Health,
        tags=["health"],
        summary="200 once Redis, catalogue and a worker answer",
        responses={503: {"model": Health, "description": "Redis, the catalogue or every worker is missing"}},
    )
    def healthz() -> JSONResponse:
        redis_ok = catalogue_ok = False
        workers = 0
        try:
            redis_ok = bool(connection.ping())
            workers = Worker.count(connection=connection, queue=q.get_queue(connection))
        except Exception:  # noqa: BLE001 - health reports, never raises
            pass
        try:
            with session_scope(settings.effective_database_url) as session:
                catalogue_ok = session.execute(text("SELECT 1")).scalar() == 1
        except Exception:  # noqa: BLE001
            pass
        ok = redis_ok and catalogue_ok and workers > 0
        body = Health(status="ok" if ok else "unavailable", redis=redis_ok, catalogue=catalogue_ok, workers=workers)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    app.include_router(batches.router)
    app.include_router(items.router)
    app.include_router(archive.router)
    app.include_router(session.router)
    app.include_router(admin.router)
    app.include_router(stream.router)
    app.include_router(station.router)
    app.include_router(exports.router)
    web.mount(app)
    generated_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # Routes reference ErrorBody by $ref (see error_responses); its schema is added here once.
        if app.openapi_schema is None:
            components = generated_openapi().setdefault("components", {}).setdefault("schemas", {})
            for name, definition in error_schemas().items():
                components.setdefault(name, definition)
            _document_unreadable_bodies(app.openapi_schema or {})
        return app.openapi_schema or generated_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _document_unreadable_bodies(schema: dict[str, Any]) -> None:
    """Every operation that takes a body answers 400 to one that cannot be read (not JSON at all)."""
    (bad_body,) = error_responses(400).values()
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault("400", bad_body)


def _error(body: ErrorBody, status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route answers for the request's path (asked route by route, method by method:
    included routers are routes of their own that match a whole prefix)."""
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in app.router.routes)
    ]
