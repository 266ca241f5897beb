"""The operator's web page (zh-CN): one HTML shell per screen, and the static files it loads.

The page is a client of the same JSON API as every other (``/api/...`` with the login cookie and its
CSRF token), so a person sees and may do in the page exactly what the API lets them: no second set of
permission checks. Every script, style and picture is in this package (``api/web/static``); the page
names no other host, and the Content-Security-Policy below makes the browser refuse any that it might.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from scanner_service import __version__

WEB = Path(str(resources.files("scanner_service") / "api" / "web"))
STATIC = WEB / "static"

SECURITY_HEADERS = {
    # Only the station: scripts, styles, pictures, frames (the PDF) and connections (API, SSE).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-src 'self'; object-src 'self'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

# path → (script, title); a screen's script renders it into <main id="app">.
SCREENS: dict[str, tuple[str, str]] = {
    "/login": ("login", "登录"),
    "/batches": ("batches", "批次"),
    "/batches/{batch_id}": ("batch", "批次详情"),
    "/archive": ("archive", "档案"),
    "/items/{code}": ("item", "档案详情"),
    "/search": ("search", "检索"),
    "/import": ("import", "目录导入"),
    "/admin": ("admin", "管理"),
}

router = APIRouter(include_in_schema=False)


def shell(script: str, title: str) -> str:
    """The HTML of one screen: the header is drawn by ui.js once it knows who is logged in."""
    template = (WEB / "shell.html").read_text(encoding="utf-8")
    return (
        template.replace("{{title}}", escape(title))
        .replace("{{script}}", escape(script))
        .replace("{{version}}", escape(__version__))
    )


def _screen(script: str, title: str) -> Callable[[], HTMLResponse]:
    def page() -> HTMLResponse:
        return HTMLResponse(shell(script, title), headers=SECURITY_HEADERS)

    page.__name__ = f"screen_{script}"
    return page


for _path, (_script, _title) in SCREENS.items():
    router.add_api_route(_path, _screen(_script, _title), methods=["GET"], response_class=HTMLResponse)


@router.get("/")
def home() -> RedirectResponse:
    # Staff start at the batches; ui.js sends a reader (who may not see batches) on to the archive.
    return RedirectResponse("/batches", status_code=303)


class _Static(StaticFiles):
    """Static files with the same headers as the screens (no other host, no sniffing)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def mount(app: FastAPI) -> None:
    """Add the screens and ``/static`` to the app."""
    app.include_router(router)
    app.mount("/static", _Static(directory=STATIC), name="static")
