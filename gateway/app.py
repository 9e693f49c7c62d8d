"""The ASGI app: routes, the request-size limit, CORS (off unless configured) and one error shape,
``{"code", "message"}``, for every failure (validation, auth, limits, unknown routes, outages, bugs)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genpool.gateway import chat_ws, conversations, jobs, system
from genpool.gateway.context import Gateway
from genpool.gateway.errors import ApiError, InvalidRequest, TooLarge, from_genpool
from genpool.gateway.settings import ApiSettings
from genpool.shared.contract import JOB_KINDS
from genpool.shared.errors import GenpoolError
from genpool.shared.settings import Settings

log = logging.getLogger("genpool.gateway")
HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def create_app(settings: Settings | None = None, api: ApiSettings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    api = api or ApiSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw = Gateway.build(settings, api)
        await gw.start()
        app.state.gateway = gw
        try:
            yield
        finally:
            await gw.close()

    app = FastAPI(title="genpool gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Gemini generation jobs over HTTP and WebSocket. Errors are {code, message}.")
    for router in (jobs.router, conversations.router, chat_ws.router, system.router):
        app.include_router(router)
    system.mount_docs(app)
    _handle_errors(app)
    if api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(api.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST"], expose_headers=["Location", "Retry-After"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"])
    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)
    return app


def _error(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after_header())} if error.retry_after_s is not None else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(GenpoolError)
    async def genpool_error(request: Request, exc: GenpoolError) -> JSONResponse:
        return _error(from_genpool(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(InvalidRequest(describe(exc.errors(), exc.body)))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse({"code": code, "message": message}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"code": "internal", "message": "internal error"}, status_code=500)


def describe(errors: Any, body: Any) -> str:
    """FastAPI's validation errors as one line, ``field.path: message``. For the body of POST /v1/jobs
    (an object or a list), only the branch that matches what was sent is reported."""
    kept = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        in_a_branch = loc[:1] == ["body"] and len(loc) > 1 and "[" in loc[1]
        if in_a_branch and loc[1].startswith("list[") != isinstance(body, list):
            continue
        if err.get("type") == "json_invalid":
            return "the body is not valid JSON"
        kept.append(f"{_where(loc)}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")
    if not kept:
        return "body: send a JSON object (one request) or a list of them"
    return "; ".join(dict.fromkeys(kept))


def _where(loc: list[str]) -> str:
    """``body / list[...] / 1 / text / prompt`` -> ``1.prompt``: no union names, no discriminator tag."""
    out: list[str] = []
    in_union = False
    for part in loc[1:] if loc[:1] == ["body"] else loc:
        if "[" in part:
            in_union = True
        elif in_union and part in JOB_KINDS:
            in_union = False
        else:
            in_union = in_union and part.isdigit()
            out.append(part)
    return ".".join(out) or "body"


class BodyLimit:
    """413 for a request body above ``max_bytes``: at once from Content-Length, else while it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _error(self._too_large())(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # an HTTPException: FastAPI passes it through its body parsing
                raise HTTPException(413, self._too_large().message)
            return message

        await self.app(scope, counted, send)

    def _too_large(self) -> TooLarge:
        return TooLarge(f"request body larger than {self.max_bytes} bytes (GENPOOL_API_MAX_BODY_BYTES)")
