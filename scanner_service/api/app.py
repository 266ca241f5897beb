"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from rq import Worker
from sqlalchemy import text

from scanner_service import __version__
from scanner_service import queue as q
from scanner_service.api.routes import archive, batches, items
from scanner_service.api.schemas import Health
from scanner_service.archival_code import InvalidArchivalCode
from scanner_service.catalogue_import import CatalogueImportError
from scanner_service.db import session_scope
from scanner_service.exceptions import ScanstationError
from scanner_service.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """The API for one station's settings."""
    app = FastAPI(
        title="scanstation",
        version=__version__,
        description="Scan station API: batches and pages as scanned; items (件) filed under their 档号 with their "
        "searchable PDF/A, page text and hOCR; search; events; the access log. Bearer token on all but /healthz.",
    )
    app.state.settings = settings
    connection = q.connect(settings)

    @app.exception_handler(ScanstationError)
    async def _station_error(_request: Request, exc: ScanstationError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        body: dict[str, object] = {"error": exc.code, "detail": exc.message}
        if exc.reason_code != exc.code:
            body["reason"] = exc.reason_code
        if isinstance(exc, InvalidArchivalCode):
            body["part"] = exc.part
        if isinstance(exc, CatalogueImportError):
            body["errors"] = [{"row": e.row, "column": e.column, "message": e.message} for e in exc.errors]
        return JSONResponse(body, status_code=exc.http_status, headers=headers)

    @app.get(
        "/healthz",
        response_model=Health,
        tags=["health"],
        summary="200 once Redis, catalogue and a worker answer",
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
    return app
