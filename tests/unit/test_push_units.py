"""Web push's pure parts: the VAPID key's form, the settings production refuses, the payload's
size and the push service's Retry-After."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from gateway.keyfiles import SecretError, check_secrets, new_secret
from gateway.push.keys import KEY_NAME, VapidKey, b64url
from gateway.push.sender import retry_after_seconds
from gateway.push.service import MAX_PAYLOAD_BYTES, build_payload
from gateway.settings import Settings
from wire.contract import Category


def test_the_vapid_key_is_the_web_push_tools_form(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    scalar = b64url(private.private_numbers().private_value.to_bytes(32, "big"))
    public = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    settings = Settings(environment="test", data_dir=tmp_path, push_vapid_private_key=scalar)
    assert VapidKey.from_settings(settings).public_key == b64url(public)
    # What `maeul secret` prints is one too, and one is made outside production.
    assert VapidKey.from_settings(settings.model_copy(update={"push_vapid_private_key": None}))
    assert (tmp_path / "secrets" / KEY_NAME).exists()
    assert VapidKey.from_settings(
        Settings(environment="test", data_dir=tmp_path, push_vapid_private_key=new_secret())
    )
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    for bad in (
        "-----BEGIN PRIVATE KEY-----MIGHAgEAMBMGByqGSM49AgEGCCqGSM49",
        b64url(secrets.token_bytes(33)),  # not 32 bytes
        b64url(order.to_bytes(32, "big")),  # past the curve's order
    ):
        with pytest.raises(SecretError, match="P-256 private key"):
            VapidKey.from_settings(
                Settings(environment="test", data_dir=tmp_path, push_vapid_private_key=bad)
            )


def test_production_needs_the_key_and_never_takes_loopback_endpoints(tmp_path: Path) -> None:
    production = {
        "environment": "production",
        "data_dir": tmp_path,
        "api_token": new_secret(),
        "push_vapid_subject": "mailto:ops@maeul.example.go.kr",
    }
    with pytest.raises(SecretError, match="GATEWAY_PUSH_VAPID_PRIVATE_KEY"):
        check_secrets(Settings(**production), [KEY_NAME])
    with pytest.raises(ValidationError, match="tests and demos"):
        Settings(**production, push_allow_loopback_endpoints=True)
    with pytest.raises(ValidationError, match="push_vapid_subject"):
        Settings(environment="test", data_dir=tmp_path, push_vapid_subject="ops@maeul")


def test_a_long_body_is_cut_to_one_record_never_the_link() -> None:
    url = "https://maeul.example.go.kr/notices/12#notice-" + "b" * 32
    for body in ("가" * 5000, "a" * 5000, "\U0001f6a8" * 2000, '"' * 5000):
        payload = build_payload(
            title="제목" * 100,
            body=body,
            url=url,
            broadcast_id="b" * 32,
            category=Category.DISASTER,
        )
        assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
        fields = json.loads(payload)
        assert fields["url"] == url
        assert fields["body"].endswith("…")
        assert len(fields["title"]) == 100
        assert len(payload.encode()) > MAX_PAYLOAD_BYTES - 8  # cut no more than it must


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Sun, 06 Dec 2026 06:01:30 GMT", now) == 90
    assert retry_after_seconds("Sun, 06 Dec 2026 05:00:00 GMT", now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
