"""HTTP routes for the command-signing keys: publish the public keys, rotate the signing key."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from gateway import signing
from gateway.auth import Admin
from gateway.db import SessionDep
from gateway.places.service import CityDep
from wire import contract

router = APIRouter(tags=["keys"])


class PublicKey(BaseModel):
    key_id: str
    algorithm: str
    public_key: str
    active: bool
    created_at: datetime
    retired_at: datetime | None


@router.get("/keys", operation_id="list_signing_keys")
async def list_keys(session: SessionDep) -> list[PublicKey]:
    """Public keys that verify command signatures (base64, raw Ed25519). No secret here."""
    return [PublicKey.model_validate(k) for k in await signing.public_keys(session)]


@router.get("/keys/ring", operation_id="get_signing_keyring")
async def get_keyring(session: SessionDep, city: CityDep) -> contract.KeyRing:
    """Every public key, oldest first, each signed by the key before it. A speaker that trusts
    any earlier key (from its configuration) learns a rotated one from here on its own: the
    endorsements, not the channel, carry the trust. No secret here."""
    return await signing.keyring(session, city.code)


@router.post("/keys/rotate", operation_id="rotate_signing_key", status_code=201)
async def rotate_key(session: SessionDep, _user: Admin, request: Request) -> PublicKey:
    """Sign from now on with a new key; speakers keep verifying with every listed key."""
    key = await signing.rotate(session, request.app.state.clock.now())
    keys = {k["key_id"]: k for k in await signing.public_keys(session)}
    return PublicKey.model_validate(keys[key.key_id])
