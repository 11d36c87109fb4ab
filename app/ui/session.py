"""Who is looking at the UI: the API key entered once, kept in an HttpOnly cookie.

Browsers cannot send an Authorization header from a link or an EventSource, so the key the
user typed on the login page is kept in a cookie that scripts cannot read (HttpOnly), that
other sites cannot make the browser send (SameSite=Strict), scoped to /ui. Each request checks
it as the API checks a bearer key: a revoked key stops working at once.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import Response

from app import auth
from app.errors import AppError, Unauthorized
from app.models import DEFAULT_TENANT_ID
from app.state import AppState

COOKIE = "distillery_key"
COOKIE_PATH = "/ui"


class LoginRequired(AppError):
    """Enter your API key to see this page."""

    code = "unauthorized"
    status = 401


class CrossSite(AppError):
    """This form was posted from another site."""

    code = "forbidden"
    status = 403


def state_of(request: Request) -> AppState:
    return request.app.state.distillery  # type: ignore[no-any-return]


async def tenant_of(request: Request) -> uuid.UUID:
    """The tenant whose key is in the cookie (the default tenant when auth is off), or
    LoginRequired; rate limited like the API."""
    state = state_of(request)
    if not state.settings.auth:
        state.limiter.check(f"tenant:{DEFAULT_TENANT_ID}")
        return DEFAULT_TENANT_ID
    key = (request.cookies.get(COOKIE) or "").strip()
    if not key:
        raise LoginRequired()
    tenant = await check_key(state, key)
    state.limiter.check(f"key:{auth.hash_key(key)}")
    return tenant


async def check_key(state: AppState, key: str) -> uuid.UUID:
    """The tenant of a live key, or LoginRequired saying the key is not valid."""
    async with state.db.reading() as session:
        try:
            return await auth.tenant_for_key(session=session, key=key)
        except Unauthorized:
            raise LoginRequired("that API key is not valid (unknown or revoked)") from None


def set_key(response: Response, request: Request, key: str) -> None:
    response.set_cookie(
        COOKIE,
        key,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_key(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def safe_next(target: str | None) -> str:
    """Where to go after login: a path under /ui of this site, never another site."""
    if not target:
        return "/ui"
    parts = urlsplit(target)
    path = parts.path
    if parts.scheme or parts.netloc or not (path == "/ui" or path.startswith("/ui/")):
        return "/ui"
    if "\\" in target or target.startswith("//"):
        return "/ui"
    return path + (f"?{parts.query}" if parts.query else "")


def login_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/ui/login?next=" + quote(here, safe="")


def same_origin(request: Request) -> bool:
    """A POST from our own pages (the Origin header, where sent, names this host)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "")
