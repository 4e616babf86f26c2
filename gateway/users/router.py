"""HTTP routes for login, tokens, accounts and API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import OAuth2PasswordRequestForm

from gateway.auth import Admin, Anyone, Role
from gateway.deps import CityDep, NowDep, SessionDep, SettingsDep, state_of
from gateway.forwarding import client_address
from gateway.users import logins, service, standing, suspension
from gateway.users.models import User
from gateway.users.schemas import (
    AccountEventRead,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    Me,
    PasswordSet,
    RefreshRequest,
    Suspension,
    TokenResponse,
    UserCreate,
    UserPage,
    UserRead,
    UserUpdate,
)

router = APIRouter(tags=["auth"])


def _tokens(user: User, tokens: logins.Tokens) -> TokenResponse:
    return TokenResponse(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        role=Role(user.role),
        username=user.username,
    )


@router.post("/auth/token", operation_id="login")
async def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    city: CityDep,
    now: NowDep,
    settings: SettingsDep,
) -> TokenResponse:
    """OAuth2 password flow: a short-lived access token and a refresh token."""
    user, tokens = await logins.login(
        session,
        state_of(request).sessions,
        settings,
        state_of(request).jwt_key,
        city,
        form.username,
        form.password,
        now=now,
        source=client_address(request, settings.trusted_networks),
        budget=state_of(request).audit_budget,
    )
    return _tokens(user, tokens)


@router.post("/auth/refresh", operation_id="refresh_token")
async def refresh(
    request: Request,
    body: RefreshRequest,
    session: SessionDep,
    city: CityDep,
    now: NowDep,
    settings: SettingsDep,
) -> TokenResponse:
    """A new pair for a refresh token; each refresh token works once. Presenting one already
    used (or refreshing the same one twice at once) is taken as theft: every session of that
    person ends, access tokens included, and they log in again."""
    user, tokens = await logins.refresh(
        session,
        state_of(request).sessions,
        settings,
        state_of(request).jwt_key,
        city,
        body.refresh_token,
        now=now,
    )
    return _tokens(user, tokens)


@router.post("/auth/logout", operation_id="logout", status_code=204)
async def logout(
    request: Request,
    body: RefreshRequest,
    session: SessionDep,
    city: CityDep,
    now: NowDep,
    settings: SettingsDep,
) -> None:
    """Revoke a refresh token (audited only when it was one that worked)."""
    await logins.logout(
        session,
        city,
        body.refresh_token,
        now=now,
        source=client_address(request, settings.trusted_networks),
    )


@router.get("/auth/me", operation_id="who_am_i")
async def me(principal: Anyone) -> Me:
    return Me(
        name=principal.name,
        role=principal.role,
        user_id=principal.user_id,
        district_ids=sorted(principal.district_ids),
        village_ids=sorted(principal.village_ids),
        via=principal.via,
    )


@router.get("/users", operation_id="list_users")
async def list_users(
    session: SessionDep,
    _admin: Admin,
    city: CityDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> UserPage:
    rows, total = await service.list_users(session, city, limit=limit, offset=offset)
    return UserPage(
        items=[UserRead.model_validate(u) for u in rows], total=total, limit=limit, offset=offset
    )


@router.post("/users", operation_id="create_user", status_code=201)
async def create_user(
    body: UserCreate,
    session: SessionDep,
    admin: Admin,
    city: CityDep,
    now: NowDep,
    request: Request,
) -> UserRead:
    request.state.audit_target = {"username": body.username, "role": body.role.value}
    user = await service.create_user(
        session,
        city,
        username=body.username,
        display_name=body.display_name,
        role=body.role,
        password=body.password,
        district_ids=body.district_ids,
        village_ids=body.village_ids,
        by=admin,
        now=now,
    )
    return UserRead.model_validate(user)


@router.get("/users/{user_id}", operation_id="get_user")
async def get_user(user_id: int, session: SessionDep, _admin: Admin, city: CityDep) -> UserRead:
    return UserRead.model_validate(await service.get_user(session, city, user_id))


@router.get("/users/{user_id}/events", operation_id="list_account_events")
async def list_account_events(
    user_id: int, session: SessionDep, _admin: Admin, city: CityDep
) -> list[AccountEventRead]:
    """Who created the account, set its password, changed its rights or re-enabled it."""
    user = await service.get_user(session, city, user_id)
    events = await standing.account_events(session, user)
    return [AccountEventRead.model_validate(e) for e in events]


@router.patch("/users/{user_id}", operation_id="update_user")
async def update_user(
    user_id: int, body: UserUpdate, session: SessionDep, admin: Admin, city: CityDep, now: NowDep
) -> UserRead:
    user = await service.get_user(session, city, user_id)
    user = await service.update_user(
        session,
        city,
        user,
        display_name=body.display_name,
        role=body.role,
        district_ids=body.district_ids,
        village_ids=body.village_ids,
        by=admin,
        now=now,
    )
    return UserRead.model_validate(user)


@router.post("/users/{user_id}/password", operation_id="set_password", status_code=204)
async def set_password(
    user_id: int,
    body: PasswordSet,
    session: SessionDep,
    admin: Admin,
    city: CityDep,
    now: NowDep,
) -> None:
    """Set a new password; the user's tokens stop working."""
    user = await service.get_user(session, city, user_id)
    await service.set_password(session, user, body.password, by=admin, now=now)


@router.post("/users/{user_id}/suspend", operation_id="suspend_user")
async def suspend_user(
    user_id: int, body: Suspension, session: SessionDep, admin: Admin, city: CityDep, now: NowDep
) -> UserRead:
    """Refuse the user at once: tokens already issued and API keys stop working, their active
    schedules are paused (`owner_suspended`; reinstating does not resume them) and their live
    sessions are ended on the speakers."""
    user = await service.get_user(session, city, user_id)
    done = await suspension.suspend(session, city, admin, user, body.reason, now=now)
    return UserRead.model_validate(done.user)


@router.post("/users/{user_id}/reinstate", operation_id="reinstate_user")
async def reinstate_user(
    user_id: int, session: SessionDep, admin: Admin, city: CityDep, now: NowDep
) -> UserRead:
    """The user may log in again. Schedules paused by the suspension stay paused until someone
    with rights resumes them (`POST /schedules/{id}/resume`)."""
    user = await service.get_user(session, city, user_id)
    return UserRead.model_validate(await service.reinstate(session, user, by=admin, now=now))


@router.get("/users/{user_id}/api-keys", operation_id="list_api_keys")
async def list_api_keys(
    user_id: int, session: SessionDep, _admin: Admin, city: CityDep
) -> list[ApiKeyRead]:
    user = await service.get_user(session, city, user_id)
    return [ApiKeyRead.model_validate(k) for k in await service.list_api_keys(session, user)]


@router.post("/users/{user_id}/api-keys", operation_id="create_api_key", status_code=201)
async def create_api_key(
    user_id: int,
    body: ApiKeyCreate,
    session: SessionDep,
    _admin: Admin,
    city: CityDep,
    now: NowDep,
    request: Request,
) -> ApiKeyCreated:
    """A key for an integration acting as this user; the key is shown only in this response."""
    request.state.audit_target = {"name": body.name}
    user = await service.get_user(session, city, user_id)
    row, key = await service.create_api_key(session, user, body.name, now=now)
    return ApiKeyCreated(**ApiKeyRead.model_validate(row).model_dump(), key=key)


@router.delete("/api-keys/{key_id}", operation_id="revoke_api_key")
async def revoke_api_key(
    key_id: int, session: SessionDep, _admin: Admin, city: CityDep, now: NowDep
) -> ApiKeyRead:
    return ApiKeyRead.model_validate(await service.revoke_api_key(session, city, key_id, now=now))
