"""A broadcast's audio: spoken text and test announcements made, uploads transcoded, and the encoded
files stored by their hash."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from audio.pipeline import Transcoded
from audio.speech.engine import synthesize_file
from audio.speech.languages import spoken_languages
from audio.speech.normalize import validate_text
from gateway.broadcasts import language_audio
from gateway.broadcasts.models import AudioAsset
from gateway.broadcasts.service import BroadcastRequest, StoredAudio
from gateway.datafiles import private_dir, private_file
from gateway.db import dialect_insert
from gateway.deps import Runtime
from gateway.errors import InvalidRequest, NotFound

# Said before and after a test or exercise played aloud (GATEWAY_TEST_PLAYBACK=announce), so
# nobody takes it for a real alert.
TEST_ANNOUNCEMENTS: Final[Mapping[str, tuple[str, str]]] = {
    "test": (
        "지금부터 시험 방송을 하겠습니다. 실제 상황이 아닙니다.",
        "이상, 시험 방송이었습니다. 실제 상황이 아닙니다.",
    ),
    "exercise": (
        "지금부터 훈련 방송을 하겠습니다. 실제 상황이 아닙니다.",
        "이상, 훈련 방송이었습니다. 실제 상황이 아닙니다.",
    ),
}


async def spoken_frame(runtime: Runtime, mode: str) -> tuple[Path, Path] | None:
    """The spoken announcements around a test or exercise played aloud, made once per engine
    and kept in the data directory; None for a real broadcast or when tests are only logged."""
    phrases = TEST_ANNOUNCEMENTS.get(mode)
    settings = runtime.settings
    if phrases is None or settings.test_playback != "announce":
        return None
    directory = private_dir(settings.data_dir / "announcements")
    paths: list[Path] = []
    for phrase in phrases:
        key = hashlib.sha256(f"{settings.speech_engine}:{phrase}".encode()).hexdigest()[:16]
        path = directory / f"{mode}-{key}.wav"
        if not path.exists():
            scratch = path.with_suffix(f".{secrets.token_hex(4)}.tmp.wav")
            await runtime.worker.run(
                synthesize_file, phrase, str(scratch), engine=settings.speech_engine
            )
            private_file(scratch)
            scratch.replace(path)
        paths.append(path)
    return paths[0], paths[1]


async def _speak(
    runtime: Runtime,
    request: BroadcastRequest,
    codecs: list[str],
    frame: tuple[Path, Path] | None,
    languages: tuple[str, ...],
) -> Transcoded:
    assert request.text is not None
    # Speech and transcode wait in the broadcast's lane: a disaster's never behind previews.
    priority = runtime.settings.priority_of(request.category, request.mode)
    directory = private_dir(runtime.settings.data_dir / "uploads")
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        wav = Path(scratch) / "speech.wav"
        await runtime.worker.speak(
            request.text,
            wav,
            engine=runtime.settings.speech_engine,
            repeat=request.repeat,
            priority=priority,
            texts=request.texts,
            languages=languages,
        )
        return await runtime.worker.transcode(
            wav, category=request.category, codecs=codecs, spoken_frame=frame, priority=priority
        )


async def _sha256_file(path: Path) -> str:
    def digest() -> str:
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
        return hasher.hexdigest()

    return await asyncio.to_thread(digest)


class EncodedAudio(Protocol):
    """Encoded bytes and what a speaker needs to know of them (a transcoded variant, a chime,
    a live talk's recording)."""

    @property
    def sha256(self) -> str: ...
    @property
    def codec(self) -> str: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def duration_ms(self) -> int: ...


async def store_encoded(session: AsyncSession, encoded: EncodedAudio, now: datetime) -> None:
    """Keep encoded audio by its sha256 (once: the same bytes are the same asset).

    One upsert, not a read then an insert: two requests storing the same bytes at once (one
    recording sent to two villages, one text spoken twice) would both read nothing and both
    insert. On a conflict the second waits for the first's transaction and then only touches
    the row."""
    insert = dialect_insert(session)
    statement = insert(AudioAsset).values(
        sha256=encoded.sha256,
        codec=encoded.codec,
        mime_type=encoded.mime_type,
        size=len(encoded.data),
        duration_ms=encoded.duration_ms,
        data=encoded.data,
        created_at=now,
    )
    # Stored again: its retention clock for audio nothing uses yet starts anew, so the purge of
    # unused audio does not take it from the request about to use it.
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[AudioAsset.sha256],
            set_={"created_at": statement.excluded.created_at},
            where=AudioAsset.created_at < statement.excluded.created_at,
        )
    )


def audio_not_found() -> NotFound:
    return NotFound(
        "audio_not_found", ko="오디오를 찾을 수 없습니다.", en="No audio with that sha256."
    )


async def get_audio(session: AsyncSession, sha256: str) -> AudioAsset:
    asset = await session.get(AudioAsset, sha256) if len(sha256) == 64 else None
    if asset is None:
        raise audio_not_found()
    return asset


async def source_sha256_of(runtime: Runtime, request: BroadcastRequest, upload: Path | None) -> str:
    """What a request's audio comes from, as start_broadcast fingerprints it: the upload's
    sha256, or the spoken text's (checked first: empty or unreadable text is refused)."""
    if upload is not None:
        return await _sha256_file(upload)
    if request.text is None:
        raise InvalidRequest(
            "missing_file",
            ko="녹음 파일이나 방송 문구가 필요합니다.",
            en="A recording or a text to speak is required.",
        )
    spoken = validate_text(request.text)
    engine = runtime.settings.speech_engine
    others = "".join(f":{tag}:{request.texts[tag]}" for tag in spoken_in(runtime, request))
    return hashlib.sha256(f"tts:{engine}:{spoken}{others}".encode()).hexdigest()


def spoken_in(runtime: Runtime, request: BroadcastRequest) -> tuple[str, ...]:
    """The languages read after Korean: those the city speaks that the request has a text in."""
    return spoken_languages(request.texts, runtime.settings.spoken_language_tags)


@dataclass(frozen=True)
class PreparedAudio:
    """Audio transcoded (or spoken) in memory, before any transaction: what the write stores.
    One audio per language set (``gateway.broadcasts.language_audio``), the first keyed None."""

    transcoded: tuple[tuple[str | None, Transcoded], ...]
    codecs: tuple[str, ...]
    stored: StoredAudio

    async def store(self, session: AsyncSession, now: datetime) -> StoredAudio:
        for _, transcoded in self.transcoded:
            for codec in self.codecs:
                await store_encoded(session, transcoded.variants[codec], now)
        return self.stored


async def language_sets(
    session: AsyncSession, runtime: Runtime, request: BroadcastRequest, village_ids: Sequence[int]
) -> list[tuple[str, ...]]:
    """The sets of languages typed text is read in for these villages: one audio each."""
    return await language_audio.spoken_sets(
        session, request.texts, village_ids, runtime.settings.spoken_language_tags
    )


async def prepare_audio(
    runtime: Runtime,
    request: BroadcastRequest,
    upload: Path | None,
    source_sha256: str,
    *,
    codecs: Sequence[str] = ("opus", "mp3"),
    sets: Sequence[tuple[str, ...]] | None = None,
) -> PreparedAudio:
    """Transcode the upload (or speak the text, once per set of languages in ``sets``, the
    first being the broadcast's first audio; None: the city's), touching no database: it may
    take minutes, and no transaction may wait on it. A recording is one audio whatever the
    sets: its texts are shown, not spoken."""
    wanted = list(codecs)
    frame = await spoken_frame(runtime, request.mode)
    made: list[tuple[str | None, Transcoded]] = []
    if upload is None:
        for index, languages in enumerate(sets or [spoken_in(runtime, request)]):
            key = None if index == 0 else language_audio.set_key(languages)
            made.append((key, await _speak(runtime, request, wanted, frame, languages)))
    else:
        transcoded = await runtime.worker.transcode(
            upload,
            category=request.category,
            codecs=wanted,
            spoken_frame=frame,
            priority=runtime.settings.priority_of(request.category, request.mode),
        )
        made.append((None, transcoded))
    return PreparedAudio(
        transcoded=tuple(made),
        codecs=tuple(wanted),
        stored=StoredAudio(
            source_sha256=source_sha256,
            # The longest: how long a speaker may be busy with it.
            duration_ms=max(transcoded.duration_ms for _, transcoded in made),
            sha256={
                language_audio.encoding_key(codec, key): transcoded.variants[codec].sha256
                for key, transcoded in made
                for codec in wanted
            },
        ),
    )


async def store_audio_for(
    session: AsyncSession,
    runtime: Runtime,
    request: BroadcastRequest,
    upload: Path | None,
    *,
    codecs: Sequence[str] = ("opus", "mp3"),
    sets: Sequence[tuple[str, ...]] | None = None,
) -> StoredAudio:
    """Transcode the upload (or speak the text, in each of ``sets``) and store it now, for a
    broadcast written later by record_broadcast. Every codec by default: who will receive it
    is only known then."""
    source_sha256 = await source_sha256_of(runtime, request, upload)
    prepared = await prepare_audio(
        runtime, request, upload, source_sha256, codecs=codecs, sets=sets
    )
    return await prepared.store(session, runtime.clock.now())
