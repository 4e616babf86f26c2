"""HTTP routes for the command-signing keys: publish the public keys, rotate or revoke a key."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway import signing
from gateway.auth import Admin
from gateway.deps import CityDep, SealDep, SessionDep, state_of
from gateway.error_catalog import documented
from wire import contract

router = APIRouter(tags=["keys"])


class PublicKey(BaseModel):
    key_id: str
    algorithm: str
    public_key: str
    active: bool
    created_at: datetime
    retired_at: datetime | None
    revoked_at: datetime | None = Field(
        description="When the key was revoked: speakers drop it and refuse what it signed."
    )
    revocation_reason: str | None


class Revocation(BaseModel):
    reason: str = Field(
        min_length=1, max_length=500, description="Why (kept with the key and in the audit log)."
    )
    strand_speakers: bool = Field(
        default=False,
        description="Revoke even the oldest key still trusted, which every speaker configured "
        "before the keys after it reaches them through: those speakers refuse every command "
        "until provisioned again. Without it such a revocation is 409 "
        "`revocation_strands_speakers`.",
    )


class Revoked(BaseModel):
    revoked: PublicKey
    active: PublicKey = Field(description="The new signing key, started by the revocation.")


async def _public(session: SessionDep, *key_ids: str) -> list[PublicKey]:
    keys = {k["key_id"]: k for k in await signing.public_keys(session)}
    return [PublicKey.model_validate(keys[key_id]) for key_id in key_ids]


@router.get("/keys", operation_id="list_signing_keys")
async def list_keys(session: SessionDep) -> list[PublicKey]:
    """Public keys that verify command signatures (base64, raw Ed25519), revoked ones included
    (marked). No secret here."""
    return [PublicKey.model_validate(k) for k in await signing.public_keys(session)]


@router.get("/keys/ring", operation_id="get_signing_keyring")
async def get_keyring(session: SessionDep, city: CityDep, seal: SealDep) -> contract.KeyRing:
    """Every public key still trusted, oldest first, each signed by the trusted key before it,
    and the revoked key ids, each revocation signed by the active key. A speaker that trusts
    any earlier key (from its configuration) learns a rotated one from here on its own, and
    drops a revoked one for good: the signatures, not the channel, carry the trust. No secret
    here."""
    return await signing.keyring(session, city.code, seal)


@router.post("/keys/rotate", operation_id="rotate_signing_key", status_code=201)
async def rotate_key(
    session: SessionDep, _user: Admin, request: Request, seal: SealDep
) -> PublicKey:
    """Sign from now on with a new key; speakers keep verifying with every listed key."""
    key = await signing.rotate(session, state_of(request).clock.now(), seal)
    [public] = await _public(session, key.key_id)
    return public


@router.post(
    "/keys/{key_id}/revoke",
    operation_id="revoke_signing_key",
    responses=documented(
        "signing_key_not_found", "signing_key_revoked", "revocation_strands_speakers"
    ),
)
async def revoke_key(
    key_id: str,
    body: Revocation,
    session: SessionDep,
    _user: Admin,
    request: Request,
    seal: SealDep,
) -> Revoked:
    """Revoke a signing key (a stolen or doubtful one, active or retired) and sign from now on
    with a new key. Speakers learn the revocation from the key ring, which the new key's first
    command makes each of them fetch; from then on they refuse commands signed by the revoked
    key (``revoked_key``) and no longer learn keys it vouches for. City administrators only.

    The oldest key still trusted is refused (409 `revocation_strands_speakers`) unless
    `strand_speakers` is true: speakers that trust only it, or keys endorsed only through it,
    would refuse every command until provisioned again. After a rotation, revoke the new key
    rather than the old one if only the new one may be stolen."""
    request.state.audit_reason = body.reason
    fresh = await signing.revoke(
        session,
        key_id,
        body.reason,
        state_of(request).clock.now(),
        seal,
        strand_speakers=body.strand_speakers,
    )
    revoked, active = await _public(session, key_id, fresh.key_id)
    return Revoked(revoked=revoked, active=active)
