"""Proof of play: what a ``played`` ack must prove, and the receipts kept.

A ``played`` ack is accepted only when

- its ``audio_sha256`` is the hash of one of the encodings the command carried, and
- its ``played_ms`` is that encoding's duration within ``max(1 s, 5 %)`` of it (a full play:
  an interrupted or pre-empted play is never ``played``); a test or exercise the city logs
  without a sound may say 0; a live stream's chime names the stream, whose length is the talk's
  (not known when the command was sent), so any length is accepted for it;
- unless it says 0 ms for a test or exercise logged without a sound, its ``level_dbfs`` is
  above `SILENCE_FLOOR_DBFS` (-70 dBFS): a play that made no sound proves nothing; and
- when the speaker has enrolled a receipt key, its ``receipt_sig`` verifies against that key.

Otherwise the delivery ends ``failed`` with reason ``bad_proof`` and a security event is
recorded. The checks are pure (`judge`): `export_of` writes what they need for a broadcast
(receipts, the speakers' public keys, the encodings), and `verify_export` (behind
`maeul proof verify`) runs them all again offline.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts import language_audio
from gateway.broadcasts.models import AudioAsset, Broadcast
from gateway.broadcasts.schemas import PlayProof
from gateway.deliveries import ed25519
from gateway.deliveries.models import Delivery
from gateway.deliveries.schemas import ExportEncoding, ExportTolerance, ProofExport, SpeakerProof
from gateway.deliveries.states import HEARD
from gateway.devicesec import security_events
from gateway.live.models import LiveSession
from gateway.places import service as places
from gateway.signing import Signer
from gateway.speakers.models import Speaker
from gateway.speakers.receipt_keys import receipt_keys
from wire import contract

log = logging.getLogger(__name__)

# A delivery that played, on time or late, holds a proof.
_HEARD: Final = frozenset(state.value for state in HEARD)

if TYPE_CHECKING:
    from gateway.deliveries.acks import AckIn

TOLERANCE_MIN_MS: Final = 1000
TOLERANCE_FRACTION: Final = 0.05
BAD_PROOF: Final = "bad_proof"
# A play that made a sound must report an output level above this: the speech and chimes the
# gateway sends are normalised to a loudness near -16 LUFS (their RMS level around -20 dBFS),
# and -70 is where loudness measurement itself stops counting a block as sound (the absolute
# gate of ITU-R BS.1770). A level at or below it, or none, is a speaker that played silence.
SILENCE_FLOOR_DBFS: Final = -70.0


class Problem(StrEnum):
    NO_PROOF = "no_proof"  # no audio hash or no played_ms
    UNKNOWN_AUDIO = "unknown_audio"  # the hash of no encoding the command carried
    WRONG_LENGTH = "wrong_length"  # played_ms too far from that encoding's duration
    SILENT = "silent"  # a play that made a sound reports no level or one at the silence floor
    NO_RECEIPT = "no_receipt"  # the speaker has a receipt key but sent no signature
    BAD_RECEIPT = "bad_receipt"  # the signature does not verify against its key
    WEAK_KEY = "weak_key"  # the enrolled key is a small-order point: anyone could sign


@dataclass(frozen=True)
class Encoding:
    codec: str
    sha256: str
    duration_ms: int | None  # None: any length (a live stream's chime)
    # The language set whose audio it is (``gateway.broadcasts.language_audio``); None: the
    # broadcast's first audio.
    audio_set: str | None = None


@dataclass(frozen=True)
class Expected:
    """What a broadcast's played acks may claim."""

    broadcast_id: str
    command_id: str
    city_id: int
    encodings: tuple[Encoding, ...]
    silent_ok: bool  # a test or exercise may have been logged without a sound

    def sent_to(self, audio_set: str | None) -> Expected:
        """What a speaker sent the audio of ``audio_set`` may claim: that audio's encodings
        only, not another village's."""
        return replace(self, encodings=tuple(e for e in self.encodings if e.audio_set == audio_set))


@dataclass(frozen=True)
class Verdict:
    problem: Problem | None
    # True: the receipt verified; None: the speaker has no key enrolled, nothing to verify.
    verified: bool | None


def tolerance_ms(duration_ms: int) -> int:
    return max(TOLERANCE_MIN_MS, -(-duration_ms * 5 // 100))


def judge(
    expected: Expected, receipt: contract.Receipt | None, public_key: bytes | None
) -> Verdict:
    """Whether a played ack's receipt (its proof fields and signature) proves the play."""
    if receipt is None:
        return Verdict(Problem.NO_PROOF, None)
    encoding = next((e for e in expected.encodings if e.sha256 == receipt.audio_sha256), None)
    if encoding is None:
        return Verdict(Problem.UNKNOWN_AUDIO, None)
    # A test or exercise logged without a sound says 0 ms; every other play made a sound.
    silent = expected.silent_ok and receipt.played_ms == 0
    if encoding.duration_ms is not None:
        off = abs(receipt.played_ms - encoding.duration_ms)
        if not silent and off > tolerance_ms(encoding.duration_ms):
            return Verdict(Problem.WRONG_LENGTH, None)
    if not silent and (receipt.level_dbfs is None or receipt.level_dbfs <= SILENCE_FLOOR_DBFS):
        return Verdict(Problem.SILENT, None)
    if public_key is None:
        return Verdict(None, None)
    if ed25519.is_small_order(public_key):
        return Verdict(Problem.WEAK_KEY, False)
    if receipt.sig is None:
        return Verdict(Problem.NO_RECEIPT, False)
    if not contract.verify_receipt(receipt, public_key):
        return Verdict(Problem.BAD_RECEIPT, False)
    return Verdict(None, True)


def receipt_from(ack: AckIn, code: str) -> contract.Receipt | None:
    if ack.audio_sha256 is None or ack.played_ms is None:
        return None
    at_ms = ack.at_ms if ack.at_ms is not None else int(ack.at.timestamp() * 1000)
    try:
        return contract.Receipt(
            command_id=ack.command_id,
            broadcast_id=ack.broadcast_id,
            speaker=code,
            audio_sha256=ack.audio_sha256,
            played_ms=ack.played_ms,
            level_dbfs=ack.level_dbfs,
            at_ms=at_ms,
            sig=ack.receipt_sig,
        )
    except ValueError:
        return None


@dataclass(frozen=True)
class Finding:
    """A played ack that proved nothing: becomes a security event."""

    city_id: int
    speaker_code: str
    ack: AckIn
    problem: Problem
    encodings: tuple[Encoding, ...]


class Checks:
    """What a batch's played acks are checked against, read once per batch."""

    def __init__(
        self,
        expected: Mapping[str, Expected],
        keys: Mapping[int, tuple[str, bytes | None]],
    ) -> None:
        self._expected = expected
        self._keys = keys
        self.findings: list[Finding] = []

    def judge(self, ack: AckIn, audio_set: str | None = None) -> Verdict:
        """Judge a played ack of a speaker that was sent the audio of ``audio_set``."""
        expected = self._expected.get(ack.broadcast_id)
        code, key = self._keys.get(ack.speaker_id, ("", None))
        if expected is None:
            return Verdict(None, None)  # not a broadcast of ours: the caller counts it unknown
        expected = expected.sent_to(audio_set)
        verdict = judge(expected, receipt_from(ack, code), key)
        if verdict.problem is not None:
            self.findings.append(
                Finding(expected.city_id, code, ack, verdict.problem, expected.encodings)
            )
        return verdict

    async def record_findings(self, session: AsyncSession) -> int:
        """Every bad proof of the batch as a security event, in the batch's transaction."""
        return await security_events.record_bad_proofs(session, [_event(f) for f in self.findings])


def _event(finding: Finding) -> security_events.BadProof:
    ack = finding.ack
    return security_events.BadProof(
        city_id=finding.city_id,
        speaker_code=finding.speaker_code,
        command_id=ack.command_id,
        broadcast_id=ack.broadcast_id,
        at=ack.at,
        problem=finding.problem.value,
        details={
            "audio_sha256": ack.audio_sha256,
            "played_ms": ack.played_ms,
            "level_dbfs": ack.level_dbfs,
            "speaker_at_ms": ack.at_ms,
            "receipt_sig": ack.receipt_sig,
            "expected": [
                {"codec": e.codec, "sha256": e.sha256, "duration_ms": e.duration_ms}
                for e in finding.encodings
            ],
        },
    )


async def prepare(session: AsyncSession, acks: Sequence[AckIn]) -> Checks:
    played = [a for a in acks if a.status is contract.AckStatus.PLAYED]
    if not played:
        return Checks({}, {})
    expected = await expectations(session, {a.broadcast_id for a in played})
    keys = await receipt_keys(session, {a.speaker_id for a in played})
    return Checks(expected, keys)


async def expectations(session: AsyncSession, broadcast_ids: Iterable[str]) -> dict[str, Expected]:
    """Per broadcast, the encodings its commands carried and how long each plays."""
    wanted = sorted(set(broadcast_ids))
    if not wanted:
        return {}
    rows = (
        await session.execute(
            select(
                Broadcast.id,
                Broadcast.command_id,
                Broadcast.city_id,
                Broadcast.audio_sha256,
                Broadcast.mode,
                Broadcast.duration_ms,
            ).where(Broadcast.id.in_(wanted))
        )
    ).tuples()
    found = list(rows)
    hashes = {sha for row in found for sha in row[3].values()}
    durations = dict(
        (
            await session.execute(
                select(AudioAsset.sha256, AudioAsset.duration_ms).where(
                    AudioAsset.sha256.in_(sorted(hashes))
                )
            )
        )
        .tuples()
        .all()
    )
    chimes = dict(
        (
            await session.execute(
                select(LiveSession.broadcast_id, LiveSession.chime_sha256).where(
                    LiveSession.broadcast_id.in_(wanted)
                )
            )
        )
        .tuples()
        .all()
    )
    result: dict[str, Expected] = {}
    for broadcast_id, command_id, city_id, audio, mode, duration_ms in found:
        encodings = [
            # A purged recording's assets are gone: its broadcast's length stands for them.
            Encoding(codec, sha, durations.get(sha, duration_ms), audio_set)
            for (codec, audio_set), sha in sorted(
                ((language_audio.parse_encoding_key(name), sha) for name, sha in audio.items()),
                key=lambda pair: (pair[0][0], pair[0][1] or ""),
            )
        ]
        chime = chimes.get(broadcast_id)
        if chime is not None:
            encodings = [e for e in encodings if e.sha256 != chime]
            encodings.append(Encoding("opus", chime, None))
        result[broadcast_id] = Expected(
            broadcast_id=broadcast_id,
            command_id=command_id,
            city_id=city_id,
            encodings=tuple(encodings),
            silent_ok=mode != "live",
        )
    return result


def keep_receipt(delivery: Delivery, ack: AckIn, verdict: Verdict) -> None:
    """Record an accepted played ack's proof and receipt together (the latest copy wins, so the
    stored fields always belong to the signature stored with them)."""
    delivery.played_sha256 = ack.audio_sha256
    delivery.played_ms = ack.played_ms
    delivery.level_dbfs = ack.level_dbfs
    delivery.receipt_sig = ack.receipt_sig
    delivery.receipt_at_ms = ack.at_ms
    delivery.receipt_verified = verdict.verified


def shown(delivery: Delivery) -> PlayProof | None:
    """A played delivery's proof as the API shows it."""
    if delivery.state not in _HEARD or delivery.played_sha256 is None:
        return None
    at_ms = delivery.receipt_at_ms
    return PlayProof(
        audio_sha256=delivery.played_sha256,
        played_ms=delivery.played_ms or 0,
        level_dbfs=delivery.level_dbfs,
        at=datetime.fromtimestamp(at_ms / 1000, UTC) if at_ms is not None else None,
        verified=delivery.receipt_verified,
    )


# --------------------------------------------------------------------------------------------
# Export and offline verification


EXPORT_DOMAIN: Final = "maeul-proof-export/v1"


def export_signing_bytes(body: Mapping[str, object]) -> bytes:
    """The bytes the gateway signs for an export (its JSON body, as sent or as read back from a
    file): the domain line, then the body without ``sig`` as sorted, compact JSON."""
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{EXPORT_DOMAIN}\n{text}".encode()


def sign_export(export: ProofExport, signer: Signer) -> ProofExport:
    """The export signed with the gateway's command-signing key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    unsigned = export.model_copy(update={"key_id": signer.key_id, "sig": None})
    data = export_signing_bytes(unsigned.model_dump(mode="json"))
    signature = Ed25519PrivateKey.from_private_bytes(signer.private_key).sign(data)
    return unsigned.model_copy(update={"sig": base64.b64encode(signature).decode("ascii")})


def export_signed_by(body: Mapping[str, object], ring: contract.KeyRing) -> str | None:
    """Why an export's body (as read) is not signed by a key of the city's `ring`, in Korean;
    None when it is. The ring is checked as a chain: each key endorsed by the one before."""
    first = ring.keys[0] if ring.keys else None
    if first is None or body.get("city") != ring.city:
        return "키 목록이 이 도시의 것이 아닙니다"
    try:
        check = contract.SignatureCheck({first.key_id: first.raw_public_key()})
    except (contract.WireError, ValueError):
        return "키 목록의 첫 키가 올바르지 않습니다"
    keys = {first.key_id: first.raw_public_key(), **check.learn(ring, ring.city)}
    if len(keys) != len({k.key_id for k in ring.keys}):
        return "키 목록의 보증 사슬이 끊겨 있습니다"
    key_id, sig = body.get("key_id"), body.get("sig")
    if not isinstance(key_id, str) or not isinstance(sig, str):
        return "게이트웨이 서명이 없습니다"
    if key_id not in keys:
        return f"서명한 키 {key_id}가 키 목록에 없습니다"
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(keys[key_id]).verify(
            base64.b64decode(sig, validate=True), export_signing_bytes(body)
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return "게이트웨이 서명이 맞지 않습니다: 내보낸 뒤 파일이 바뀌었습니다"
    return None


async def export_of(
    session: AsyncSession, broadcast_id: str, *, city_code: str, now: datetime, signer: Signer
) -> ProofExport:
    """A broadcast's receipts, its speakers' public keys and its encodings, signed by the
    gateway, for `verify_export`."""
    expected = (await expectations(session, [broadcast_id]))[broadcast_id]
    mode = await session.scalar(select(Broadcast.mode).where(Broadcast.id == broadcast_id))
    rows = (
        await session.execute(
            select(Delivery, Speaker.code, Speaker.receipt_public_key)
            .join(Speaker, Speaker.id == Delivery.speaker_id)
            .where(Delivery.broadcast_id == broadcast_id)
            .order_by(Delivery.village_id, Speaker.code)
        )
    ).tuples()
    found = list(rows)
    villages = await places.village_codes(session, sorted({d.village_id for d, _, _ in found}))
    speakers_out = []
    for delivery, code, public_key in found:
        receipt = None
        if delivery.state in _HEARD and delivery.played_sha256 is not None:
            receipt = contract.Receipt(
                command_id=expected.command_id,
                broadcast_id=broadcast_id,
                speaker=code,
                audio_sha256=delivery.played_sha256,
                played_ms=delivery.played_ms or 0,
                level_dbfs=delivery.level_dbfs,
                at_ms=delivery.receipt_at_ms or 0,
                sig=delivery.receipt_sig,
            )
        village = villages.get(delivery.village_id)
        speakers_out.append(
            SpeakerProof(
                code=code,
                village_code=village[0] if village else str(delivery.village_id),
                state=delivery.state,
                reason=delivery.reason,
                public_key=public_key,
                receipt=receipt,
                verified=delivery.receipt_verified if receipt is not None else None,
                audio_set=delivery.audio_set,
            )
        )
    export = ProofExport(
        city=city_code,
        broadcast_id=broadcast_id,
        command_id=expected.command_id,
        mode=mode or "live",
        exported_at=now,
        silent_ok=expected.silent_ok,
        tolerance=ExportTolerance(min_ms=TOLERANCE_MIN_MS, fraction=TOLERANCE_FRACTION),
        encodings=[
            ExportEncoding(
                codec=e.codec, sha256=e.sha256, duration_ms=e.duration_ms, audio_set=e.audio_set
            )
            for e in expected.encodings
        ],
        speakers=speakers_out,
        key_id=signer.key_id,
    )
    return sign_export(export, signer)


@dataclass(frozen=True)
class Checked:
    """One speaker of an export, checked offline: ``ok`` None when it has nothing to prove."""

    code: str
    ok: bool | None
    why: str


_WHY: Final[Mapping[Problem, str]] = {
    Problem.NO_PROOF: "재생 증명이 없습니다",
    Problem.UNKNOWN_AUDIO: "보낸 적 없는 오디오의 해시입니다",
    Problem.WRONG_LENGTH: "재생 시간이 오디오 길이와 맞지 않습니다",
    Problem.SILENT: "출력 레벨이 없거나 무음 수준입니다 (-70 dBFS 이하)",
    Problem.NO_RECEIPT: "서명된 수신 확인이 없습니다",
    Problem.BAD_RECEIPT: "수신 확인 서명이 맞지 않습니다",
    Problem.WEAK_KEY: "등록된 수신 확인 키가 누구나 서명을 위조할 수 있는 약한 키입니다",
}


def verify_export(export: ProofExport) -> list[Checked]:
    """Recompute every check of every played speaker's receipt, trusting nothing the export
    says about the outcome (its ``verified`` flags are ignored)."""
    expected = Expected(
        broadcast_id=export.broadcast_id,
        command_id=export.command_id,
        city_id=0,
        encodings=tuple(
            Encoding(e.codec, e.sha256, e.duration_ms, e.audio_set) for e in export.encodings
        ),
        silent_ok=export.silent_ok,
    )
    checked: list[Checked] = []
    for speaker in export.speakers:
        if speaker.reason == BAD_PROOF:
            # It said it played, and the gateway refused its proof: a failed proof, not a
            # speaker that had nothing to prove.
            checked.append(Checked(speaker.code, False, "게이트웨이가 재생 증명을 거부했습니다"))
            continue
        if speaker.state not in _HEARD:
            why = speaker.state if speaker.reason is None else f"{speaker.state}, {speaker.reason}"
            checked.append(Checked(speaker.code, None, f"재생하지 않아 증명 없음 ({why})"))
            continue
        receipt = speaker.receipt
        if receipt is None:
            checked.append(Checked(speaker.code, False, _WHY[Problem.NO_PROOF]))
            continue
        if (
            receipt.command_id != export.command_id
            or receipt.broadcast_id != export.broadcast_id
            or receipt.speaker != speaker.code
        ):
            checked.append(Checked(speaker.code, False, "다른 방송이나 스피커의 수신 확인입니다"))
            continue
        if speaker.public_key is None:
            checked.append(Checked(speaker.code, False, "수신 확인 키가 등록되지 않았습니다"))
            continue
        try:
            key = base64.b64decode(speaker.public_key, validate=True)
        except binascii.Error:
            checked.append(Checked(speaker.code, False, "공개 키가 올바르지 않습니다"))
            continue
        verdict = judge(expected.sent_to(speaker.audio_set), receipt, key)
        if verdict.problem is not None:
            checked.append(Checked(speaker.code, False, _WHY[verdict.problem]))
        else:
            checked.append(Checked(speaker.code, True, "서명과 해시, 재생 시간이 모두 맞습니다"))
    return checked
