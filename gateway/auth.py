"""Who is calling and what their role lets them do.

Three kinds of bearer credential reach the API:

- a short-lived JWT access token from ``POST /api/v1/auth/token`` (people: phones, office PCs);
- an API key (``mk_...``) for an integration, acting as the user it belongs to;
- the deployment's bootstrap token (``GATEWAY_API_TOKEN``), a city administrator used to provision
  the first accounts and by the local CLI of ``make run``.

Every route declares the roles that may call it with ``Allow`` (a test walks all routes and
every role); object-level checks (which villages, which categories) live in ``gateway.scopes``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.deps import state_of
from gateway.errors import Forbidden, Unauthorized
from gateway.keyfiles import load_secret
from gateway.settings import Settings
from wire.contract import Category

_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from /api/v1/auth/token, an API key, or the bootstrap token",
)

API_KEY_PREFIX: Final = "mk_"
# How the audit log, a broadcast's author and every other record name the bootstrap token.
BOOTSTRAP_ACTOR: Final = "bootstrap-token"
_ALGORITHM: Final = "HS256"


class Role(StrEnum):
    CITY_ADMIN = "city_admin"
    DISTRICT_OFFICER = "district_officer"
    VILLAGE_HEAD = "village_head"
    POLICE_OFFICER = "police_officer"
    SAFETY_OFFICER = "safety_officer"
    AUDITOR = "auditor"


ALL_ROLES: Final = frozenset(Role)
# Roles that send broadcasts; the auditor only reads.
SENDERS: Final = frozenset(ALL_ROLES - {Role.AUDITOR})


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    user_id: int | None = None  # None: the bootstrap token
    district_ids: frozenset[int] = field(default_factory=frozenset)
    village_ids: frozenset[int] = field(default_factory=frozenset)
    via: str = "token"  # token | jwt | api_key
    # The categories this person may send in this city (``role_categories``); None: the role's
    # defaults.
    categories: frozenset[Category] | None = None

    @property
    def may_send(self) -> frozenset[Category]:
        if self.categories is not None:
            return self.categories
        return DEFAULT_ROLE_CATEGORIES[self.role]

    @property
    def actor(self) -> str:
        """How the audit log and the broadcast's ``created_by`` name this caller."""
        return self.name if self.user_id is None else f"{self.name}#{self.user_id}"


C = Category
DEFAULT_ROLE_CATEGORIES: Final[Mapping[Role, frozenset[Category]]] = {
    Role.CITY_ADMIN: frozenset(C),
    Role.DISTRICT_OFFICER: frozenset(C),
    Role.VILLAGE_HEAD: frozenset({C.VILLAGE_NOTICE, C.ADMINISTRATIVE, C.DISASTER}),
    # Police announce crime prevention only, and so can never override a disaster alert.
    Role.POLICE_OFFICER: frozenset({C.CRIME_PREVENTION}),
    Role.SAFETY_OFFICER: frozenset({C.DISASTER}),
    Role.AUDITOR: frozenset(),
}


def role_categories(settings: Settings) -> Mapping[Role, frozenset[Category]]:
    """What each role may send in this city: the defaults above, with the roles that
    ``GATEWAY_ROLE_CATEGORIES`` names replaced. An auditor sends nothing, and police never send
    a disaster alert (it would outrank every other), whatever the setting says."""
    table = dict(DEFAULT_ROLE_CATEGORIES)
    for name, categories in settings.role_categories.items():
        try:
            role = Role(name)
        except ValueError:
            raise ValueError(f"GATEWAY_ROLE_CATEGORIES: unknown role {name!r}") from None
        wanted = frozenset(categories)
        if role is Role.AUDITOR and wanted:
            raise ValueError("GATEWAY_ROLE_CATEGORIES: an auditor sends nothing")
        if role is Role.POLICE_OFFICER and C.DISASTER in wanted:
            raise ValueError("GATEWAY_ROLE_CATEGORIES: police never send disaster alerts")
        table[role] = wanted
    return table


def with_city_rights(principal: Principal, settings: Settings) -> Principal:
    """``principal`` with the categories this city lets its role send (its own table, when
    GATEWAY_ROLE_CATEGORIES sets one)."""
    if not settings.role_categories:
        return principal
    return replace(principal, categories=role_categories(settings)[principal.role])


def _not_authenticated() -> Unauthorized:
    return Unauthorized(
        "not_authenticated",
        ko="인증이 필요합니다. 로그인하거나 Authorization: Bearer 헤더로 토큰을 보내 주세요.",
        en="Authentication required: log in, or send a token as 'Authorization: Bearer <token>'.",
    )


def invalid_token() -> Unauthorized:
    return Unauthorized(
        "invalid_token",
        ko="토큰이 올바르지 않거나 만료되었습니다. 다시 로그인해 주세요.",
        en="The token is invalid or has expired; log in again.",
    )


def signing_key(settings: Settings) -> bytes:
    """The key that signs access tokens: ``GATEWAY_JWT_SECRET`` (or its ``_FILE``), never derived
    from another secret; outside production, the data directory's own (``gateway.keyfiles``).
    Read once per app, at start; a missing or weak one stops a production gateway there."""
    return load_secret(settings, "jwt_secret")


def issue_access_token(
    settings: Settings,
    key: bytes,
    *,
    user_id: int,
    city: str,
    token_version: int,
    now: datetime,
) -> tuple[str, int]:
    ttl = settings.access_token_ttl_s
    claims = {
        "sub": str(user_id),
        "city": city,
        "ver": token_version,
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM), ttl


def read_access_token(
    settings: Settings, key: bytes, token: str, *, now: datetime
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            options={"require": ["exp", "sub", "ver", "typ"], "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise invalid_token() from None
    # Expiry against the gateway's clock (tests move it), not the wall clock.
    if claims.get("typ") != "access" or int(claims["exp"]) <= int(now.timestamp()):
        raise invalid_token()
    if claims.get("city") != settings.city_code:
        raise invalid_token()
    return claims


def hash_api_key(key: str) -> str:
    # API keys are 256-bit random: a plain digest is enough, and lookups stay fast.
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_prefix(key: str) -> str:
    """The public part of a key, stored in clear to find its row."""
    return key[: len(API_KEY_PREFIX) + 8]


def new_api_key() -> tuple[str, str]:
    """(the key shown once, its public prefix used to find it)."""
    key = f"{API_KEY_PREFIX}{secrets.token_urlsafe(32)}"
    return key, api_key_prefix(key)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    settings: Settings = state_of(request).settings
    if credentials is None:
        raise _not_authenticated()
    presented = credentials.credentials
    bootstrap = settings.api_token.get_secret_value() if settings.api_token else None
    if bootstrap is not None and hmac.compare_digest(presented.encode(), bootstrap.encode()):
        principal = with_city_rights(
            Principal(name=BOOTSTRAP_ACTOR, role=Role.CITY_ADMIN, via="token"), settings
        )
        request.state.principal = principal  # the audit row names it, never "anonymous"
        return principal
    from gateway.users import logins as users  # the users slice imports this module

    async with state_of(request).sessions() as session:
        now = state_of(request).clock.now()
        if presented.startswith(API_KEY_PREFIX):
            principal = await users.principal_for_api_key(session, presented, now=now)
        else:
            claims = read_access_token(settings, state_of(request).jwt_key, presented, now=now)
            principal = await users.principal_for_claims(session, claims, now=now)
        await session.commit()
    principal = with_city_rights(principal, settings)
    request.state.principal = principal
    return principal


async def presented_principal(request: Request) -> Principal | None:
    """The caller if they sent a credential (refused if it is not valid), else None: for a
    route that also serves without one (a signed link)."""
    credentials = await _bearer(request)
    return None if credentials is None else await current_principal(request, credentials)


CurrentUser = Annotated[Principal, Depends(current_principal)]


class Allow:
    """A route's declaration of the roles that may call it (checked before anything else)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    def __repr__(self) -> str:
        return f"Allow({', '.join(sorted(self.roles))})"

    async def __call__(self, principal: CurrentUser) -> Principal:
        if principal.role not in self.roles:
            raise Forbidden(
                "role_not_allowed",
                ko="이 작업을 할 권한이 없습니다.",
                en=f"The role {principal.role.value!r} may not do this.",
            )
        return principal


def allow(*roles: Role) -> Any:
    """``Annotated[Principal, allow(...)]``: the caller, if their role is one of ``roles``."""
    return Depends(Allow(*roles))


def allowed_roles(dependencies: Collection[Any]) -> frozenset[Role] | None:
    """The roles an endpoint declared, found among its dependency callables (for tests/docs)."""
    for call in dependencies:
        if isinstance(call, Allow):
            return call.roles
    return None


Anyone = Annotated[Principal, allow(*ALL_ROLES)]
Admin = Annotated[Principal, allow(Role.CITY_ADMIN)]
Sender = Annotated[Principal, allow(*SENDERS)]
