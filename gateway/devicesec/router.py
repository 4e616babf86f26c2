"""HTTP routes for device security: speaker credentials, the broker's files, security events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import AwareDatetime

from gateway.auth import Admin, Principal, Role, allow
from gateway.db import SessionDep
from gateway.devicesec import service
from gateway.devicesec.schemas import (
    BrokerAccountCreate,
    BrokerAccountIssued,
    BrokerAccountRead,
    EventKind,
    SecurityEventPage,
    SpeakerCredentials,
)
from gateway.places.service import CityDep, NowDep
from gateway.settings import Settings

router = APIRouter(tags=["device security"])

Reviewer = Annotated[Principal, allow(Role.CITY_ADMIN, Role.AUDITOR)]
# Secrets and hashes must not sit in any cache on the way.
_NO_STORE = {"Cache-Control": "no-store"}


def _own(request: Request) -> service.OwnUser | None:
    settings: Settings = request.app.state.settings
    target = settings.mqtt
    if target.username is None or target.password is None:
        return None
    return service.OwnUser(target.username, target.password)


def _errors(**codes: str) -> dict[int | str, dict[str, Any]]:
    status = {"not_found": 404, "conflict": 409}
    return {status[kind]: {"description": text} for kind, text in codes.items()}


@router.post(
    "/speakers/{speaker_id}/credentials",
    status_code=201,
    operation_id="issue_speaker_credentials",
    responses=_errors(not_found="speaker_not_found", conflict="username_taken"),
)
async def issue_speaker_credentials(
    speaker_id: int,
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    now: NowDep,
    request: Request,
    response: Response,
) -> SpeakerCredentials:
    """A new broker password for the speaker, shown this once; the previous one stops working
    when the broker reloads the password file (`GET /broker/passwd`)."""
    own = _own(request)
    response.headers.update(_NO_STORE)
    return await service.issue_speaker_credentials(
        session, city, speaker_id, now=now, reserved=(own.username,) if own else ()
    )


@router.get(
    "/broker/passwd",
    operation_id="get_broker_password_file",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def get_broker_password_file(
    session: SessionDep, _user: Admin, city: CityDep, request: Request
) -> PlainTextResponse:
    """Mosquitto's password_file (hashes only): the gateway, broker accounts, and every speaker
    with a password, named by its code."""
    text = await service.render_passwd_file(session, city, own=_own(request))
    return PlainTextResponse(text, headers=_NO_STORE)


@router.get(
    "/broker/acl",
    operation_id="get_broker_acl_file",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def get_broker_acl_file(
    session: SessionDep, _user: Admin, city: CityDep, request: Request
) -> PlainTextResponse:
    """Mosquitto's acl_file: each speaker reads only its city's, district's, village's and own
    command topics and writes only its own acks and presence."""
    own = _own(request)
    text = await service.render_acl_file(session, city, own=own.username if own else None)
    return PlainTextResponse(text, headers=_NO_STORE)


@router.get("/broker/accounts", operation_id="list_broker_accounts")
async def list_broker_accounts(
    session: SessionDep, _user: Admin, city: CityDep
) -> list[BrokerAccountRead]:
    """Broker users that are not speakers (gateways, monitors). No passwords or hashes."""
    return await service.list_accounts(session, city)


@router.post(
    "/broker/accounts",
    status_code=201,
    operation_id="create_broker_account",
    responses=_errors(conflict="username_taken"),
)
async def create_broker_account(
    body: BrokerAccountCreate,
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    now: NowDep,
    response: Response,
) -> BrokerAccountIssued:
    """Create a gateway or monitor account, or give an existing one a new password."""
    response.headers.update(_NO_STORE)
    return await service.create_account(session, city, body, now=now)


@router.delete(
    "/broker/accounts/{username}",
    status_code=204,
    operation_id="delete_broker_account",
    responses=_errors(not_found="account_not_found"),
)
async def delete_broker_account(
    username: str, session: SessionDep, _user: Admin, city: CityDep
) -> None:
    await service.delete_account(session, city, username)


@router.get("/security-events", operation_id="list_security_events")
async def list_security_events(
    session: SessionDep,
    _user: Reviewer,
    city: CityDep,
    kind: EventKind | None = None,
    speaker: Annotated[str | None, Query(max_length=64, description="A speaker code.")] = None,
    since: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SecurityEventPage:
    """Commands speakers refused for a security reason (forged, replayed, expired, out of
    scope...) and acks the gateway could not trust, newest first."""
    return await service.list_security_events(
        session, city, kind=kind, speaker=speaker, since=since, limit=limit, offset=offset
    )
