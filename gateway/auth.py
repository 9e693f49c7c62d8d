"""Route dependencies: the process's Gateway, and the token behind the request (401 otherwise)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from genpool.gateway.context import Gateway
from genpool.gateway.tokens import TokenInfo

# Declared for the OpenAPI document (Swagger's "Authorize" button); the header is checked in Gateway.caller.
bearer = HTTPBearer(auto_error=False, description="a token made with `genpool tokens create NAME`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found


async def authenticated(request: Request, _: Credentials) -> TokenInfo:
    return await gateway(request).caller(request.headers.get("authorization"))


Caller = Annotated[TokenInfo, Depends(authenticated)]  # the token behind the request
GatewayDep = Annotated[Gateway, Depends(gateway)]
