"""HTTP routes of the push slice: the VAPID public key, and subscribing a browser to a village's
notices (no login: the residents' page is public)."""

from __future__ import annotations

import math
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.deps import CityDep, NowDep, SessionDep, state_of
from gateway.error_catalog import documented
from gateway.errors import NotFound, TooManyRequests
from gateway.forwarding import client_address
from gateway.push import subscriptions
from gateway.push.keys import VapidKey
from gateway.users import throttle

router = APIRouter(tags=["push"])

# What subscription changes count against in the shared request counts (``throttle``).
COUNTED_AS: Final = "#push-subscriptions"


class PushNotConfigured(NotFound):
    code = "push_not_enabled"

    def __init__(self) -> None:
        super().__init__(
            ko="이 게이트웨이는 웹 푸시 알림을 보내지 않습니다.",
            en="This gateway does not send web push notifications.",
        )


class VapidPublicKey(BaseModel):
    public_key: str = Field(
        description="The VAPID public key (an uncompressed P-256 point, base64url): "
        "pushManager.subscribe()'s applicationServerKey."
    )


class BrowserKeys(BaseModel):
    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)


class BrowserSubscription(BaseModel):
    """PushSubscription.toJSON() as the browser gives it."""

    endpoint: str = Field(min_length=1, max_length=4096)
    expirationTime: float | None = None  # the browser's own name
    keys: BrowserKeys


class PushSubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    village_id: int
    language: str | None = Field(
        default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="e.g. ko, en, vi"
    )
    subscription: BrowserSubscription


class PushSubscriptionDelete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=4096)


class PushSubscriptionRead(BaseModel):
    id: str
    village_id: int
    language: str | None


def _vapid(request: Request) -> VapidKey:
    key = state_of(request).push_key
    if key is None:
        raise PushNotConfigured()
    return key


VapidDep = Annotated[VapidKey, Depends(_vapid)]


async def _limit(request: Request, city: CityDep, now: NowDep) -> None:
    """Subscription changes one source may make a minute, counted in the database (every
    replica together), in a transaction of its own: a refused or failing change counts too."""
    state = state_of(request)
    source = throttle.source_of(client_address(request, state.settings.trusted_networks))
    async with state.sessions() as session:
        count, window_end = await throttle.count_request(
            session, city_id=city.id, source=source, name=COUNTED_AS, window_s=60, now=now
        )
        await session.commit()
    if count > state.settings.push_subscriptions_per_minute:
        raise TooManyRequests(
            "push_rate_limited",
            ko="알림 신청이 너무 잦습니다. 잠시 후 다시 시도해 주세요.",
            en="Too many subscription changes from this address; try again in a minute.",
            retry_after_s=max(1, math.ceil((window_end - now).total_seconds())),
        )


@router.get(
    "/push/vapid-public-key",
    operation_id="get_push_vapid_public_key",
    responses=documented("push_not_enabled"),
)
async def get_vapid_public_key(key: VapidDep) -> VapidPublicKey:
    """The key browsers subscribe with (no login)."""
    return VapidPublicKey(public_key=key.public_key)


@router.post(
    "/push/subscriptions",
    operation_id="create_push_subscription",
    status_code=201,
    responses=documented(
        "push_not_enabled",
        "push_rate_limited",
        "push_endpoint_invalid",
        "push_keys_invalid",
        "village_not_found",
    ),
    dependencies=[Depends(_limit)],
)
async def create_subscription(
    body: PushSubscriptionCreate,
    request: Request,
    session: SessionDep,
    city: CityDep,
    now: NowDep,
    _: VapidDep,
) -> PushSubscriptionRead:
    """Subscribe a browser to the notices of a village (no login); the same endpoint again
    moves it to the village given."""
    subscription = await subscriptions.subscribe(
        session,
        city,
        village_id=body.village_id,
        language=body.language,
        endpoint=body.subscription.endpoint,
        p256dh=body.subscription.keys.p256dh,
        auth=body.subscription.keys.auth,
        now=now,
        allow_loopback=state_of(request).settings.push_allow_loopback_endpoints,
    )
    return PushSubscriptionRead(
        id=subscription.id, village_id=subscription.village_id, language=subscription.language
    )


@router.delete(
    "/push/subscriptions",
    operation_id="delete_push_subscription",
    status_code=204,
    response_class=Response,
    responses=documented("push_rate_limited"),
    dependencies=[Depends(_limit)],
)
async def delete_subscription(
    body: PushSubscriptionDelete, session: SessionDep, city: CityDep
) -> Response:
    """Unsubscribe the browser that holds this endpoint (no login: the endpoint is the proof).
    Answers 204 whether or not it was subscribed."""
    await subscriptions.unsubscribe(session, city, endpoint=body.endpoint)
    return Response(status_code=204)
