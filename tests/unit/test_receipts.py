"""Receipts: their canonical bytes, signing and verifying, the speaker core signing its played
acks, and the gateway's checks of a played ack's proof."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from devices.actions import Ack
from devices.agent_config import ConfigError, load_receipt_key
from devices.speaker import SpeakerCore
from gateway.deliveries.proof import Encoding, Expected, Problem, judge, tolerance_ms
from tests.devices.commands import NOW, audio, command, resend
from wire import contract

IDENTITY = contract.SpeakerIdentity(city="testcity", district="d1", village="v1", speaker="s1")
CLIP = b"OggS" + bytes(range(256)) * 4
CID, BID, SHA = "a" * 32, "b" * 32, "c" * 64
CLIP_SHA = hashlib.sha256(CLIP).hexdigest()


def _receipt(**fields: object) -> contract.Receipt:
    base: dict[str, object] = {
        "command_id": CID,
        "broadcast_id": BID,
        "speaker": "s1",
        "audio_sha256": SHA,
        "played_ms": 105_000,
        "level_dbfs": -23.4,
        "at_ms": 1_700_000_000_123,
    }
    return contract.Receipt.model_validate({**base, **fields})


def test_the_signed_bytes_are_the_documented_lines() -> None:
    assert _receipt().signing_bytes() == (
        f"maeul-receipt/v1\n{CID}\n{BID}\ns1\n{SHA}\n105000\n-23.40\n1700000000123".encode()
    )
    assert _receipt(level_dbfs=None).signing_bytes().split(b"\n")[6] == b""
    assert _receipt(level_dbfs=-0.001).signing_bytes().split(b"\n")[6] == b"0.00"


def test_a_signed_receipt_verifies_with_its_key_only_and_covers_every_field() -> None:
    private, public = contract.new_receipt_key()
    assert contract.receipt_public_key(private) == public
    signed = contract.sign_receipt(_receipt(), private)
    assert contract.verify_receipt(signed, public)
    assert not contract.verify_receipt(signed, contract.new_receipt_key()[1])
    assert not contract.verify_receipt(_receipt(), public)  # unsigned
    for change in (
        {"played_ms": 105_001},
        {"audio_sha256": "0" * 64},
        {"level_dbfs": -3.0},
        {"at_ms": 1},
        {"speaker": "s2"},
        {"command_id": "d" * 32},
        {"broadcast_id": "e" * 32},
    ):
        assert not contract.verify_receipt(signed.model_copy(update=change), public), change


def test_the_core_signs_every_played_ack_with_the_speaker_s_key() -> None:
    private, public = contract.new_receipt_key()
    core = SpeakerCore(IDENTITY, codecs=("opus",), receipt_key=private, clock=lambda: NOW)
    cmd = command(refs=(audio(CLIP),))
    core.on_command(contract.encode_command(cmd))
    actions = core.on_prepared(cmd.id, duration_ms=500, level_dbfs=-12.3456)
    assert all(a.message.receipt_sig is None for a in actions if isinstance(a, Ack))
    actions = core.on_play_finished(cmd.id, played_ms=500)
    (played,) = [a.message for a in actions if isinstance(a, Ack)]
    assert played.level_dbfs == -12.35  # two decimals on the wire, as signed
    receipt = contract.receipt_of(played)
    assert receipt is not None
    assert contract.verify_receipt(receipt, public)
    # The gateway asking again is answered from the journal, with a receipt signed afresh.
    repeat = core.on_command(contract.encode_command(resend(cmd, at_ms=NOW)))
    (again,) = [a.message for a in repeat if isinstance(a, Ack)]
    again_receipt = contract.receipt_of(again)
    assert again_receipt is not None
    assert contract.verify_receipt(again_receipt, public)


def test_the_agent_makes_its_receipt_key_once_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "receipt.key"
    made = load_receipt_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_receipt_key(path) == made
    path.write_text("not base64!")
    with pytest.raises(ConfigError):
        load_receipt_key(path)
    path.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(ConfigError):
        load_receipt_key(path)


EXPECTED = Expected(
    broadcast_id=BID,
    command_id=CID,
    city_id=1,
    encodings=(Encoding("opus", SHA, 105_000), Encoding("mp3", "d" * 64, 105_040)),
    silent_ok=False,
)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, None),
        ({"audio_sha256": "d" * 64}, None),  # the other encoding
        ({"played_ms": 105_000 + 5250}, None),  # 5 % of 105 s
        ({"played_ms": 105_000 - 5251}, Problem.WRONG_LENGTH),
        ({"played_ms": 1}, Problem.WRONG_LENGTH),
        ({"audio_sha256": "0" * 64, "played_ms": 1}, Problem.UNKNOWN_AUDIO),
        ({"played_ms": 0}, Problem.WRONG_LENGTH),  # silence is proof only for a logged test
        ({"level_dbfs": -69.99}, None),
        ({"level_dbfs": -70.0}, Problem.SILENT),  # the silence floor
        ({"level_dbfs": -200.0}, Problem.SILENT),  # digital silence
        ({"level_dbfs": None}, Problem.SILENT),  # a sound played must say how loud
    ],
)
def test_a_played_ack_must_name_a_sent_encoding_played_in_full(
    fields: dict[str, object], problem: Problem | None
) -> None:
    assert judge(EXPECTED, _receipt(**fields), None).problem is problem


def test_the_tolerance_is_one_second_or_five_percent() -> None:
    assert tolerance_ms(2000) == 1000
    assert tolerance_ms(105_000) == 5250


def test_a_logged_test_may_be_silent_and_a_live_chime_any_length() -> None:
    logged = Expected(BID, CID, 1, (Encoding("opus", SHA, 105_000),), silent_ok=True)
    assert judge(logged, _receipt(played_ms=0, level_dbfs=None), None).problem is None
    live = Expected(BID, CID, 1, (Encoding("opus", SHA, None),), silent_ok=False)
    assert judge(live, _receipt(played_ms=12_340), None).problem is None
    # A test the city wants heard is played in full and must be as loud as any other.
    assert judge(logged, _receipt(level_dbfs=-200.0), None).problem is Problem.SILENT
    assert judge(live, _receipt(played_ms=12_340, level_dbfs=None), None).problem is (
        Problem.SILENT
    )


def test_honest_speakers_report_a_level_well_above_the_silence_floor() -> None:
    """What the fleet measures for the audio the gateway sends: a chime as `devices.sound`
    measures it (speech normalised the same way measures about -17 dBFS)."""
    from audio.chimes import chime
    from audio.pipeline import AudioOptions
    from devices.sound import measure_level_dbfs
    from gateway.deliveries.proof import SILENCE_FLOOR_DBFS

    options = AudioOptions()
    for category in ("administrative", "disaster"):
        samples = chime(
            "start",
            category,
            rate=16_000,
            target_lufs=options.target_lufs,
            peak_dbtp=options.true_peak_dbtp,
        )
        pcm = (samples.clip(-1, 1) * 32767).astype("<i2").tobytes()
        assert measure_level_dbfs(pcm) > SILENCE_FLOOR_DBFS + 30, category


def test_with_an_enrolled_key_the_receipt_must_be_signed_by_it() -> None:
    private, public = contract.new_receipt_key()
    signed = contract.sign_receipt(_receipt(), private)
    assert judge(EXPECTED, signed, public) == judge(EXPECTED, signed, public)
    assert judge(EXPECTED, signed, public).verified is True
    assert judge(EXPECTED, _receipt(), public).problem is Problem.NO_RECEIPT
    forged = contract.sign_receipt(_receipt(), contract.new_receipt_key()[0])
    assert judge(EXPECTED, forged, public).problem is Problem.BAD_RECEIPT
    assert judge(EXPECTED, None, public).problem is Problem.NO_PROOF


# Small-order points of Ed25519 (order 1, 2, 4 and 8) and non-canonical encodings.
WEAK_KEYS = (
    bytes(32),  # all zeros: (sqrt(-1), 0), order 4
    bytes([1]) + bytes(31),  # the identity
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # order 2
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
    bytes(31) + b"\x80",  # zeros with the sign bit: "negative zero" x, non-canonical
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # y = p
)


def _forged_with_identity_r(receipt: contract.Receipt) -> contract.Receipt:
    """The attack on a small-order key: R the identity, S = 0, valid for some messages."""
    sig = bytes([1]) + bytes(31) + bytes(32)
    return receipt.model_copy(update={"sig": base64.b64encode(sig).decode()})


def test_only_prime_order_points_are_strong_receipt_keys() -> None:
    from gateway.deliveries import ed25519

    for _ in range(5):
        public = contract.new_receipt_key()[1]
        assert ed25519.is_strong_public_key(public)
        assert not ed25519.is_small_order(public)
    for weak in WEAK_KEYS:
        assert not ed25519.is_strong_public_key(weak), weak.hex()
        assert ed25519.is_small_order(weak), weak.hex()
    # A genuine key plus a point of order 2: not small-order, but not of prime order either.
    point = ed25519._decode(contract.new_receipt_key()[1])
    assert point is not None
    x, y, z, _ = ed25519._add(point, (0, ed25519._P - 1, 1, 0))
    zi = pow(z, ed25519._P - 2, ed25519._P)
    xa, ya = x * zi % ed25519._P, y * zi % ed25519._P
    mixed = (ya | (xa & 1) << 255).to_bytes(32, "little")
    assert not ed25519.is_strong_public_key(mixed)


def test_a_receipt_forged_for_a_small_order_key_never_verifies() -> None:
    expected = Expected(BID, CID, 1, (Encoding("opus", SHA, 105_000),), silent_ok=False)
    # Vary the time until the forged signature holds for the zero key, as the attacker did.
    holds = [
        r
        for r in (_forged_with_identity_r(_receipt(at_ms=1_700_000_000_000 + n)) for n in range(64))
        if contract.verify_receipt(r, bytes(32))
    ]
    assert holds, "the library accepts small-order keys: the gateway must refuse them itself"
    verdict = judge(expected, holds[0], bytes(32))
    assert (verdict.problem, verdict.verified) == (Problem.WEAK_KEY, False)


def test_a_resend_already_played_is_answered_with_a_fresh_receipt_of_the_resend() -> None:
    """What the docs say a speaker signs when it acks a resend ``played`` with
    ``already_played_as``: the resend's command and broadcast ids, a fresh at_ms, and the
    earlier playback's audio hash, played_ms and level."""
    private, public = contract.new_receipt_key()
    clock = [NOW]
    core = SpeakerCore(IDENTITY, codecs=("opus",), receipt_key=private, clock=lambda: clock[0])
    original = command(refs=(audio(CLIP),))
    core.on_command(contract.encode_command(original))
    core.on_prepared(original.id, duration_ms=500, level_dbfs=-17.2)
    (first,) = [
        a.message for a in core.on_play_finished(original.id, played_ms=500) if isinstance(a, Ack)
    ]
    clock[0] = NOW + 5_000
    again = command(refs=(audio(CLIP),), supersedes=(original.id,), at_ms=NOW + 4_000)
    answers = [a.message for a in core.on_command(contract.encode_command(again))]
    played = [m for m in answers if m.status is contract.AckStatus.PLAYED]
    assert len(played) == 1
    (ack,) = played
    assert ack.already_played_as == original.id
    assert (ack.command_id, ack.broadcast_id, ack.at_ms) == (
        again.id,
        again.broadcast_id,
        NOW + 5_000,
    )
    assert (ack.audio_sha256, ack.played_ms, ack.level_dbfs) == (
        first.audio_sha256,
        first.played_ms,
        first.level_dbfs,
    )
    receipt = contract.receipt_of(ack)
    assert receipt is not None
    assert contract.verify_receipt(receipt, public)
    # The gateway judges it against the resend, which carries the same audio.
    resend = Expected(again.broadcast_id, again.id, 1, (Encoding("opus", CLIP_SHA, 500),), False)
    assert judge(resend, receipt, public) == judge(resend, receipt, public)
    assert judge(resend, receipt, public).verified is True
    # The original's receipt, sent again as is, proves nothing for the resend.
    original_receipt = contract.receipt_of(first)
    assert original_receipt is not None
    stale = original_receipt.model_copy(
        update={"command_id": again.id, "broadcast_id": again.broadcast_id}
    )
    assert judge(resend, stale, public).problem is Problem.BAD_RECEIPT
