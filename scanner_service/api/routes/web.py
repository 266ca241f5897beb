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
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from scanner_service import __version__
from scanner_service.api.deps import SESSION_COOKIE

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

# script → the styles of its screen besides app.css, named in the HTML so the browser fetches them with the
# script instead of once the script runs (a screen drawn unstyled, then again).
STYLES: dict[str, tuple[str, ...]] = {
    "batches": ("batches.css",),
    "batch": ("batch.css",),
    "archive": ("archive.css",),
    "item": ("archive.css",),
    "search": ("archive.css",),
    "import": ("admin.css",),
    "admin": ("admin.css",),
}

router = APIRouter(include_in_schema=False)


def shell(script: str, title: str) -> str:
    """The HTML of one screen: the header is drawn by ui.js once it knows who is logged in."""
    template = (WEB / "shell.html").read_text(encoding="utf-8")
    styles = "".join(
        f'<link rel="stylesheet" href="/static/{escape(name)}?v={escape(__version__)}">\n'
        for name in STYLES.get(script, ())
    )
    return (
        template.replace("{{title}}", escape(title))
        .replace("{{styles}}\n", styles)
        .replace("{{script}}", escape(script))
        .replace("{{version}}", escape(__version__))
    )


def _to_login(request: Request) -> RedirectResponse | None:
    """A browser with no login cookie at all goes straight to the login (the screen would only ask
    ``GET /api/session`` to be told 401, an error in the console of every first visit). A cookie that
    has ended is still found out by the screen's own ``GET /api/session``."""
    if request.cookies.get(SESSION_COOKIE):
        return None
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


def _screen(script: str, title: str) -> Callable[[Request], Response]:
    def page(request: Request) -> Response:
        if script != "login" and (away := _to_login(request)) is not None:
            return away
        return HTMLResponse(shell(script, title), headers=SECURITY_HEADERS)

    page.__name__ = f"screen_{script}"
    return page


for _path, (_script, _title) in SCREENS.items():
    router.add_api_route(_path, _screen(_script, _title), methods=["GET"], response_class=HTMLResponse)


@router.get("/")
def home(request: Request) -> RedirectResponse:
    # Staff start at the batches; ui.js sends a reader (who may not see batches) on to the archive.
    return _to_login(request) or RedirectResponse("/batches", status_code=303)


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
