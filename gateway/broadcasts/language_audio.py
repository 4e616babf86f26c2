"""Audio per language set: what each village reads after Korean, one audio per distinct set,
and which of a broadcast's audios each village's speakers are sent.

A broadcast's ``audio_sha256`` maps each codec to its first audio. Typed text whose villages
read different sets of languages adds, for every further set, one entry per codec keyed
``"codec:set"`` (``"opus:ko+vi"``), so everything that keeps, lists or purges a broadcast's
audio by the values of that map keeps all of them. A village whose set has an audio of its
own is sent that one; every other village (its set is the first audio's, or its languages
changed after the audio was made) is sent the first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from audio.speech.languages import spoken_languages
from gateway.places import service as places

SEPARATOR: Final = ":"


def set_key(spoken: Sequence[str]) -> str:
    """A set's name: Korean, then the languages read after it, in order (``"ko+vi+zh"``)."""
    return "+".join(("ko", *spoken))


def encoding_key(codec: str, key: str | None) -> str:
    return codec if key is None else f"{codec}{SEPARATOR}{key}"


def parse_encoding_key(name: str) -> tuple[str, str | None]:
    """An ``audio_sha256`` key as (codec, set key or None for the first audio)."""
    codec, _, key = name.partition(SEPARATOR)
    return codec, key or None


def encodings_of(audio_sha256: Mapping[str, str], key: str | None) -> dict[str, str]:
    """codec -> sha256 of the audio sent to villages of set ``key`` (None: the first audio)."""
    found: dict[str, str] = {}
    for name, sha in audio_sha256.items():
        codec, of = parse_encoding_key(name)
        if of == key:
            found[codec] = sha
    return found


def further_sets(audio_sha256: Mapping[str, str]) -> set[str]:
    """The keys of the sets that have an audio besides the first."""
    return {key for _, key in map(parse_encoding_key, audio_sha256) if key is not None}


async def _spoken_by_village(
    session: AsyncSession,
    texts: Mapping[str, str],
    village_ids: Sequence[int],
    default: Sequence[str],
) -> dict[int, tuple[str, ...]]:
    chosen = await places.village_languages(session, village_ids)
    return {vid: spoken_languages(texts, chosen.get(vid) or default) for vid in village_ids}


async def spoken_sets(
    session: AsyncSession,
    texts: Mapping[str, str],
    village_ids: Sequence[int],
    default: Sequence[str],
) -> list[tuple[str, ...]]:
    """The distinct sets of languages read after Korean in these villages, one audio each: the
    city's (``default``) first when a village reads it, else in the order of the villages."""
    city = spoken_languages(texts, default)
    if not texts or not village_ids:
        return [city]
    found = dict.fromkeys((await _spoken_by_village(session, texts, village_ids, default)).values())
    if city in found:
        return [city, *(s for s in found if s != city)]
    return list(found)


async def village_sets(
    session: AsyncSession,
    texts: Mapping[str, str],
    village_ids: Sequence[int],
    default: Sequence[str],
    audio_sha256: Mapping[str, str],
) -> dict[int, str]:
    """The villages sent another audio than the first: village id -> its set's key."""
    further = further_sets(audio_sha256)
    if not further:
        return {}
    spoken = await _spoken_by_village(session, texts, village_ids, default)
    keys = {vid: set_key(tags) for vid, tags in spoken.items()}
    return {vid: key for vid, key in keys.items() if key in further}
