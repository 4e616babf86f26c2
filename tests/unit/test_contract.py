"""The wire contract: topics, payload validation, signatures and the speaker's checks."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from wire import contract
from wire.contract import AckStatus, Category, RejectReason

IDENTITY = contract.SpeakerIdentity(
    city="jinju", district="d01", village="d01-v001", speaker="d01-v001-s1"
)
NOW = 1_800_000_000_000


def _command(**overrides: object) -> contract.Command:
    fields: dict[str, object] = {
        "type": "play",
        "id": contract.new_id(),
        "broadcast_id": contract.new_id(),
        "city": "jinju",
        "scope": contract.Scope(kind="district", ids=("d01",)),
        "category": Category.ADMINISTRATIVE,
        "priority": 20,
        "issued_at_ms": NOW,
        "expires_at_ms": NOW + 60_000,
        "nonce": contract.new_nonce(),
        "audio": (
            contract.inline_audio(
                codec=contract.Codec.OPUS,
                mime_type="audio/ogg",
                data=b"OggS-fake",
                duration_ms=1000,
            ),
        ),
    }
    fields.update(overrides)
    return contract.Command.model_validate(fields)


def _keypair() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, public


def test_topics_are_built_and_parsed() -> None:
    assert contract.command_topic_all("jinju") == "maeul/v1/jinju/cmd/all"
    assert (
        contract.command_topic_village("jinju", "d01-v001") == "maeul/v1/jinju/cmd/village/d01-v001"
    )
    assert contract.ack_topic("jinju", "s1") == "maeul/v1/jinju/ack/s1"
    assert contract.parse_speaker_topic("maeul/v1/jinju/ack/s1", "ack") == ("jinju", "s1")
    assert contract.ack_subscription().startswith("$share/")
    assert len(IDENTITY.subscriptions()) == 4


@pytest.mark.parametrize(
    "topic",
    [
        "maeul/v1/jinju/ack",
        "maeul/v1/jinju/presence/s1",
        "x/v1/jinju/ack/s1",
        "maeul/v1/ji+nju/ack/s1",
    ],
)
def test_bad_ack_topics_are_refused(topic: str) -> None:
    with pytest.raises(contract.WireError):
        contract.parse_speaker_topic(topic, "ack")


@pytest.mark.parametrize("segment", ["", "a/b", "a+b", "#", "x" * 65, "마을"])
def test_topic_segments_are_checked(segment: str) -> None:
    with pytest.raises(contract.WireError):
        contract.command_topic_village("jinju", segment)


def test_command_round_trip() -> None:
    command = _command()
    assert contract.decode_command(contract.encode_command(command)) == command


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"type": "play"}',
        json.dumps({"v": 2}).encode(),
        b"{" * 10_000,
    ],
)
def test_garbage_commands_raise_wire_errors(payload: bytes) -> None:
    with pytest.raises(contract.WireError):
        contract.decode_command(payload)


def test_oversized_ack_is_refused_before_parsing() -> None:
    with pytest.raises(contract.WireError, match="exceeds"):
        contract.decode_ack(b" " * (contract.MAX_ACK_BYTES + 1))


def test_ack_rejects_unknown_fields_and_statuses() -> None:
    good = contract.Ack(
        command_id=contract.new_id(),
        broadcast_id=contract.new_id(),
        speaker="s1",
        status=AckStatus.PLAYED,
        at_ms=NOW,
    )
    body = json.loads(contract.encode_ack(good))
    assert contract.decode_ack(json.dumps(body).encode()) == good
    with pytest.raises(contract.WireError):
        contract.decode_ack(json.dumps({**body, "extra": 1}).encode())
    with pytest.raises(contract.WireError):
        contract.decode_ack(json.dumps({**body, "status": "maybe"}).encode())


def test_commands_must_expire_after_issue_and_carry_audio() -> None:
    with pytest.raises(ValueError, match="expire"):
        _command(expires_at_ms=NOW)
    with pytest.raises(ValueError, match="audio"):
        _command(audio=())


def test_scope_checks() -> None:
    assert _command().scope.covers(IDENTITY)
    assert contract.check_command(_command(), IDENTITY, at_ms=NOW) is None
    other = _command(scope=contract.Scope(kind="village", ids=("d02-v001",)))
    assert contract.check_command(other, IDENTITY, at_ms=NOW) is RejectReason.OUT_OF_SCOPE
    assert (
        contract.check_command(_command(city="sacheon"), IDENTITY, at_ms=NOW)
        is RejectReason.OUT_OF_SCOPE
    )
    with pytest.raises(ValueError, match="ids"):
        contract.Scope(kind="all", ids=("x",))


def test_expiry_and_future_commands() -> None:
    command = _command()
    assert contract.check_command(command, IDENTITY, at_ms=NOW + 60_000) is RejectReason.EXPIRED
    future = _command(issued_at_ms=NOW + 10 * 60_000, expires_at_ms=NOW + 20 * 60_000)
    assert contract.check_command(future, IDENTITY, at_ms=NOW) is RejectReason.NOT_YET_VALID


def test_signatures_verify_and_tampering_is_caught() -> None:
    private, public = _keypair()
    check = contract.SignatureCheck({"k1": public})
    signed = contract.sign_command(_command(), key_id="k1", private_key=private)
    assert contract.check_command(signed, IDENTITY, at_ms=NOW, verify=check) is None
    for change in (
        {"scope": contract.Scope(kind="all")},
        {"expires_at_ms": NOW + 10**9},
        {"category": Category.DISASTER},
        {"key_id": "k2"},
    ):
        forged = signed.model_copy(update=change)
        expected = RejectReason.UNKNOWN_KEY if "key_id" in change else RejectReason.BAD_SIGNATURE
        assert contract.check_command(forged, IDENTITY, at_ms=NOW, verify=check) is expected
    unsigned = _command()
    assert (
        contract.check_command(unsigned, IDENTITY, at_ms=NOW, verify=check) is RejectReason.UNSIGNED
    )


def test_signature_covers_audio_hash_not_transport() -> None:
    command = _command()
    ref = command.audio[0]
    moved = ref.model_copy(update={"data": None, "url": "https://example.invalid/a"})
    assert command.signing_bytes() == command.model_copy(update={"audio": (moved,)}).signing_bytes()
    changed = ref.model_copy(update={"sha256": "0" * 64})
    assert (
        command.signing_bytes() != command.model_copy(update={"audio": (changed,)}).signing_bytes()
    )


def test_audio_ref_needs_exactly_one_source_and_valid_base64() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        contract.AudioRef(
            codec="opus", mime_type="audio/ogg", sha256="0" * 64, size=1, duration_ms=1
        )
    ref = contract.AudioRef(
        codec="opus", mime_type="audio/ogg", sha256="0" * 64, size=1, duration_ms=1, data="!!!"
    )
    with pytest.raises(contract.WireError):
        ref.inline_bytes()


def test_codec_choice_follows_command_order() -> None:
    mp3 = contract.inline_audio(
        codec=contract.Codec.MP3, mime_type="audio/mpeg", data=b"ID3", duration_ms=1
    )
    command = _command(audio=(*_command().audio, mp3))
    assert command.audio_for(["mp3"]) == mp3
    assert command.audio_for(["opus", "mp3"]) == command.audio[0]
    assert command.audio_for(["aac"]) is None


def test_message_expiry_rounds_up_and_is_positive() -> None:
    command = _command()
    assert contract.message_expiry_seconds(command, NOW) == 60
    assert contract.message_expiry_seconds(command, NOW + 59_500) == 1
    assert contract.message_expiry_seconds(command, NOW + 120_000) == 1
