"""A clustered broker's questions, answered from the database: may this client connect, and may
it publish or subscribe here.

EMQX 5 asks through its ``http`` authenticator and authorizer (deploy/emqx/): on each connect
the gateway checks user name, password and client id against the same hashes and bindings
Mosquitto's files are rendered from, and on each publish and subscribe it decides with the same
grants (`gateway.devicesec.grants`). Nothing is cached here, so a deleted speaker or a new
password is refused at its next question; the broker's own authorization cache is set to one
second.

A connection outlives its password: at connect the gateway hands the broker a stamp of the
credential used (an HMAC of its hash under the hook secret, as the client attribute
``maeul_stamp``) and each later question carries it back. Once the credential changes, the stamp
no longer matches and every publish and subscribe of the old connection is denied.

Only the broker may ask: every request carries the shared secret ``broker_hook_secret`` in
``X-Maeul-Hook-Secret``. These routes are internal and left out of the OpenAPI document.

Exceptions (rendered as usual)::

    Unauthorized  broker_hook_secret_missing  (401) no secret header
    Forbidden     broker_hook_secret_wrong    (403) a secret that is not the hook secret
    Unavailable   broker_hooks_unconfigured   (503) no usable GATEWAY_BROKER_HOOK_SECRET: unset in
                                                    production, or too weak (the log says which)
"""

from __future__ import annotations

import base64
import hmac
import logging
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import CityDep, SessionDep, state_of
from gateway.devicesec import grants
from gateway.devicesec.models import BrokerAccount, SpeakerCredential
from gateway.devicesec.mosquitto import verify_password
from gateway.errors import Forbidden, NotFound, Unauthorized, Unavailable
from gateway.keyfiles import SecretError, load_secret
from gateway.places.models import City
from gateway.settings import Settings
from gateway.speakers import service as speakers
from wire import contract

log = logging.getLogger(__name__)

HEADER: Final = "X-Maeul-Hook-Secret"
STAMP_ATTRIBUTE: Final = "maeul_stamp"
_SECRET_NAME: Final = "broker_hook_secret"
_TEXT_MAX: Final = 1024
_ACTIONS: Final[dict[str, grants.Action]] = {"publish": "publish", "subscribe": "subscribe"}

router = APIRouter(prefix="/broker/hooks", tags=["broker hooks"], include_in_schema=False)


# --------------------------------------------------------------------------------------------
# The shared secret


def _hook_secret(request: Request) -> bytes:
    """The hook secret, loaded once per app (a failed load is tried again next time)."""
    state = state_of(request)
    loaded: bytes | None = getattr(state, "broker_hook_secret", None)
    if loaded is None:
        settings: Settings = state.settings
        try:
            loaded = load_secret(settings, _SECRET_NAME)
        except SecretError as exc:
            log.error("broker hooks refused: %s", exc)
            raise Unavailable(
                "broker_hooks_unconfigured",
                ko="브로커 연동 비밀값이 없거나 약해 브로커의 문의에 답할 수 없습니다.",
                en="The broker hook secret (GATEWAY_BROKER_HOOK_SECRET) is missing or too weak.",
            ) from None
        state.broker_hook_secret = loaded
    return loaded


def _broker(
    request: Request,
    given: Annotated[str | None, Header(alias=HEADER, max_length=_TEXT_MAX)] = None,
) -> bytes:
    """The caller is the broker: it holds the hook secret. Returns the secret."""
    secret = _hook_secret(request)
    if not given:
        raise Unauthorized(
            "broker_hook_secret_missing",
            ko="브로커 연동 비밀값이 없습니다.",
            en=f"The {HEADER} header is missing.",
        )
    if not hmac.compare_digest(given.encode(), secret):
        raise Forbidden(
            "broker_hook_secret_wrong",
            ko="브로커 연동 비밀값이 맞지 않습니다.",
            en=f"The {HEADER} header does not hold the broker hook secret.",
        )
    return secret


BrokerSecret = Annotated[bytes, Depends(_broker)]


# --------------------------------------------------------------------------------------------
# Accounts, as the broker's questions need them


@dataclass(frozen=True)
class Account:
    """A broker user: a stored gateway or monitor account, the gateway's own user (from its MQTT
    URL), or a speaker with a password."""

    username: str
    role: grants.Role
    place: grants.Place | None
    password_hash: str | None  # None: the gateway's own user, whose password is in its URL
    own_password: str | None = None

    def verifies(self, password: str) -> bool:
        if self.password_hash is not None:
            # 101 rounds of PBKDF2, as Mosquitto checks it: well under a millisecond.
            return verify_password(password, self.password_hash)
        return self.own_password is not None and hmac.compare_digest(
            password.encode(), self.own_password.encode()
        )

    def stamp(self, secret: bytes) -> str:
        """Names the credential: a new password makes a new stamp."""
        material = self.password_hash or f"own\0{self.own_password}"
        digest = hmac.digest(secret, f"stamp\0{self.username}\0{material}".encode(), "sha256")
        return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")

    def grants(self, city: str) -> list[grants.Grant]:
        return grants.grants_for(city, self.username, self.role, self.place)


async def find_account(
    session: AsyncSession, city: City, username: str, settings: Settings
) -> Account | None:
    """The broker user named `username`, as the password file would name it: a stored account
    first, then the gateway's own user, then a speaker with a password."""
    stored = await session.scalar(
        select(BrokerAccount).where(
            BrokerAccount.city_id == city.id, BrokerAccount.username == username
        )
    )
    if stored is not None:
        if stored.role not in ("gateway", "monitor"):
            return None
        role: grants.Role = "gateway" if stored.role == "gateway" else "monitor"
        return Account(username, role, None, stored.password_hash)
    own = settings.mqtt
    if own.username is not None and own.password is not None and username == own.username:
        return Account(username, "gateway", None, None, own_password=own.password)
    if not contract.is_valid_segment(username):
        return None
    try:
        placement = await speakers.placement_of(session, city, username)
    except NotFound:
        return None
    credential = await session.get(SpeakerCredential, placement.speaker_id)
    if credential is None:
        return None
    place = grants.Place(placement.district_code, placement.village_code)
    return Account(username, "speaker", place, credential.password_hash)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    why: str
    stamp: str | None = None


async def authenticate(
    session: AsyncSession,
    city: City,
    settings: Settings,
    secret: bytes,
    *,
    username: str,
    password: str,
    client_id: str,
) -> Verdict:
    account = await find_account(session, city, username, settings)
    if account is None:
        return Verdict(False, "unknown_user")
    if not account.verifies(password):
        return Verdict(False, "wrong_password")
    if not grants.client_id_allowed(account.role, username, client_id, settings.mqtt_client_prefix):
        return Verdict(False, "client_id_not_allowed")
    return Verdict(True, "ok", stamp=account.stamp(secret))


async def authorize(
    session: AsyncSession,
    city: City,
    settings: Settings,
    secret: bytes,
    *,
    username: str,
    client_id: str,
    stamp: str,
    action: str,
    topic: str,
) -> Verdict:
    account = await find_account(session, city, username, settings)
    if account is None:
        return Verdict(False, "unknown_user")
    if not hmac.compare_digest(stamp.encode(), account.stamp(secret).encode()):
        return Verdict(False, "credential_changed")
    if not grants.client_id_allowed(account.role, username, client_id, settings.mqtt_client_prefix):
        return Verdict(False, "client_id_not_allowed")
    wanted = _ACTIONS.get(action)
    if wanted is None:
        return Verdict(False, "unknown_action")
    if not grants.permits(account.grants(city.code), wanted, topic):
        return Verdict(False, "not_granted")
    return Verdict(True, "ok")


# --------------------------------------------------------------------------------------------
# EMQX 5: the http authenticator and authorizer

_Text = Annotated[str, Field(max_length=_TEXT_MAX)]


class EmqxAuthentication(BaseModel):
    """What deploy/emqx/emqx.conf has EMQX send on each connect."""

    username: _Text = ""
    password: _Text = ""
    clientid: _Text = ""


class EmqxAuthorization(BaseModel):
    """What deploy/emqx/emqx.conf has EMQX send on each publish and subscribe."""

    username: _Text = ""
    clientid: _Text = ""
    stamp: _Text = Field(default="", description=f"The client attribute {STAMP_ATTRIBUTE}.")
    action: _Text = ""
    topic: _Text = ""


class EmqxAuthenticationResult(BaseModel):
    result: Literal["allow", "deny"]
    is_superuser: bool = False
    client_attrs: dict[str, str] | None = None


class EmqxAuthorizationResult(BaseModel):
    result: Literal["allow", "deny"]


@router.post("/emqx/authenticate", response_model_exclude_none=True)
async def emqx_authenticate(
    secret: BrokerSecret,  # first: nothing else is looked at for a caller without it
    body: EmqxAuthentication,
    session: SessionDep,
    city: CityDep,
    request: Request,
) -> EmqxAuthenticationResult:
    verdict = await authenticate(
        session,
        city,
        state_of(request).settings,
        secret,
        username=body.username,
        password=body.password,
        client_id=body.clientid,
    )
    if not verdict.allowed:
        log.info(
            "broker connect denied (%s): user %r, client id %r",
            verdict.why,
            body.username[:64],
            body.clientid[:64],
        )
        return EmqxAuthenticationResult(result="deny")
    attributes = {STAMP_ATTRIBUTE: verdict.stamp or ""}
    return EmqxAuthenticationResult(result="allow", client_attrs=attributes)


@router.post("/emqx/authorize")
async def emqx_authorize(
    secret: BrokerSecret,  # first: nothing else is looked at for a caller without it
    body: EmqxAuthorization,
    session: SessionDep,
    city: CityDep,
    request: Request,
) -> EmqxAuthorizationResult:
    verdict = await authorize(
        session,
        city,
        state_of(request).settings,
        secret,
        username=body.username,
        client_id=body.clientid,
        stamp=body.stamp,
        action=body.action,
        topic=body.topic,
    )
    if not verdict.allowed:
        log.info(
            "broker %s denied (%s): user %r, topic %r",
            body.action[:16],
            verdict.why,
            body.username[:64],
            body.topic[:200],
        )
    return EmqxAuthorizationResult(result="allow" if verdict.allowed else "deny")
