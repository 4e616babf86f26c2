"""HTTP routes for device security: speaker credentials, the broker's files, security events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import Admin, Principal, Role, allow
from gateway.deps import CityDep, NowDep, SessionDep, state_of
from gateway.devicesec import broker_files, dynsec, grants, security_events, service
from gateway.devicesec.brokeradmin import (
    BrokerAdmin,
    BrokerAdminError,
    BrokerUserReserved,
    admin_of,
    after_change,
)
from gateway.devicesec.schemas import (
    BrokerAccountCreate,
    BrokerAccountIssued,
    BrokerAccountRead,
    EventKind,
    SecurityEventPage,
    SpeakerCredentials,
)
from gateway.error_catalog import documented
from gateway.errors import Unavailable
from gateway.keyfiles import load_secret
from gateway.places.models import City
from gateway.settings import Settings

router = APIRouter(tags=["device security"])

Reviewer = Annotated[Principal, allow(Role.CITY_ADMIN, Role.AUDITOR)]
# Secrets and hashes must not sit in any cache on the way.
_NO_STORE = {"Cache-Control": "no-store"}


def _own(request: Request) -> broker_files.OwnUser | None:
    settings: Settings = state_of(request).settings
    target = settings.mqtt
    if target.username is None or target.password is None:
        return None
    return broker_files.OwnUser(target.username, target.password)


def _reserved(request: Request) -> list[str]:
    """Broker user names no API call may take: the gateway's own and its admin account's."""
    settings: Settings = state_of(request).settings
    own = _own(request)
    names = [settings.broker_admin_username, own.username if own else settings.mqtt.username]
    return [name for name in names if name]


@router.post(
    "/speakers/{speaker_id}/credentials",
    status_code=201,
    operation_id="issue_speaker_credentials",
    responses=documented("speaker_not_found", "username_taken", "broker_unavailable"),
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
    """A new broker password for the speaker, shown this once, usable only under the speaker's
    own client id. When the gateway manages the broker (`GATEWAY_BROKER_ADMIN_USERNAME`) the
    broker has it before this answers and the previous one no longer works; if the broker
    cannot be reached the answer is 503 `broker_unavailable` and nothing changes. Otherwise it
    takes effect when the broker's files are rendered again (`maeul broker files`)."""
    response.headers.update(_NO_STORE)
    return await issue_and_push(session, city, speaker_id, now=now, request=request)


async def issue_and_push(
    session: AsyncSession, city: City, speaker_id: int, *, now: datetime, request: Request
) -> SpeakerCredentials:
    """A new broker password for the speaker, on the broker (when the gateway manages it) before
    the caller's transaction commits; 503 `broker_unavailable` and a rollback when it cannot."""
    admin = admin_of(state_of(request))
    issued = await service.issue_speaker_credentials(
        session, city, speaker_id, now=now, reserved=_reserved(request)
    )
    if admin is not None:
        client, acls = await broker_files.speaker_broker_client(session, city, speaker_id)
        await _push(admin, client, issued.password, acls)
    return issued


def _broker_unavailable(exc: BrokerAdminError) -> Unavailable:
    if not exc.maybe_applied:
        return Unavailable(
            "broker_unavailable",
            ko="MQTT 브로커에 새 비밀번호를 등록하지 못해 아무것도 바꾸지 않았습니다. 잠시 후 "
            "다시 시도하세요.",
            en=f"The MQTT broker did not take the new password, so nothing changed; try again "
            f"shortly ({exc}).",
        )
    return Unavailable(
        "broker_unavailable",
        ko="MQTT 브로커가 답하지 않아 새 비밀번호가 등록되었는지 알 수 없습니다. 이전 비밀번호가 "
        "더 이상 통하지 않을 수 있으니, 잠시 후 다시 발급하세요.",
        en=f"The MQTT broker did not confirm the new password, so it may or may not have taken "
        f"it and the previous one may no longer work; issue a new one shortly ({exc}).",
    )


async def _push(
    admin: BrokerAdmin,
    client: dynsec.BrokerClient,
    password: str,
    acls: Mapping[str, frozenset[dynsec.Acl]],
) -> None:
    """The password goes to the broker before the database commits it: a failure is an error
    and a rollback, never a password the broker does not know. A user the broker holds that is
    not the gateway's is refused before anything is sent."""
    try:
        await admin.put(client, password, acls)
    except BrokerUserReserved as exc:
        raise service.username_taken(exc.username) from exc
    except BrokerAdminError as exc:
        raise _broker_unavailable(exc) from exc


@router.get(
    "/broker/dynamic-security",
    operation_id="get_broker_dynamic_security_file",
)
async def get_broker_dynamic_security_file(
    session: SessionDep, _user: Admin, city: CityDep, request: Request
) -> Response:
    """The file of Mosquitto's dynamic security plugin (hashes only): the gateway's admin
    account, the gateway, broker accounts, and every speaker with a password, bound to its own
    client id with a role holding its own topics."""
    settings: Settings = state_of(request).settings
    admin = None
    if settings.broker_admin_username:
        password = load_secret(settings, "broker_admin_password").decode()
        admin = broker_files.OwnUser(settings.broker_admin_username, password)
    text = await broker_files.render_dynsec_file(session, city, own=_own(request), admin=admin)
    return Response(text, media_type="application/json", headers=_NO_STORE)


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
    text = await broker_files.render_passwd_file(session, city, own=_own(request))
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
    text = await broker_files.render_acl_file(session, city, own=own.username if own else None)
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
    responses=documented("username_taken", "broker_unavailable"),
)
async def create_broker_account(
    body: BrokerAccountCreate,
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    now: NowDep,
    response: Response,
    request: Request,
) -> BrokerAccountIssued:
    """Create a gateway or monitor account, or give an existing one a new password (pushed to
    the broker at once when the gateway manages it; 503 `broker_unavailable` if it cannot).
    The gateway's own user, its broker admin account, speakers and users made on the broker by
    hand are 409 `username_taken`, refused before anything changes."""
    response.headers.update(_NO_STORE)
    request.state.audit_target = {"username": body.username, "role": body.role}
    issued, password = await service.create_account(
        session, city, body, now=now, reserved=_reserved(request)
    )
    admin = admin_of(state_of(request))
    if admin is not None:
        role = dynsec.GATEWAY_ROLE if body.role == "gateway" else dynsec.MONITOR_ROLE
        bound = grants.monitor_client_id(body.username) if body.role == "monitor" else None
        client = dynsec.BrokerClient(body.username, (role,), bound)
        await _push(admin, client, password, {role: dynsec.FIXED_ROLES[role]})
    return issued


@router.delete(
    "/broker/accounts/{username}",
    status_code=204,
    operation_id="delete_broker_account",
    responses=documented("account_not_found"),
)
async def delete_broker_account(
    username: str, session: SessionDep, _user: Admin, city: CityDep, request: Request
) -> None:
    """Delete the account; a broker the gateway manages shuts it out at once."""
    await service.delete_account(session, city, username)
    await after_change(state_of(request), session)


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
    return await security_events.list_security_events(
        session, city, kind=kind, speaker=speaker, since=since, limit=limit, offset=offset
    )
