"""Who is calling: bearer-token authentication of API callers."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.errors import Unauthorized
from gateway.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="The gateway's API token")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    settings: Settings = request.app.state.settings
    expected = settings.api_token.get_secret_value() if settings.api_token else None
    if credentials is None or expected is None:
        raise Unauthorized(
            "not_authenticated",
            ko="인증이 필요합니다. API 토큰을 Authorization: Bearer 헤더로 보내 주세요.",
            en="Authentication required: send the API token as 'Authorization: Bearer <token>'.",
        )
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise Unauthorized(
            "invalid_token",
            ko="API 토큰이 올바르지 않습니다.",
            en="The API token is not valid.",
        )
    return Principal(name="operator", role="city_admin")


CurrentUser = Annotated[Principal, Depends(current_principal)]
