"""Content-addressed audio storage: atomic, idempotent, and closed to path tricks."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from audio.store import AudioIntegrityError, AudioStore


def test_put_returns_sha256_and_files_it_under_two_levels(tmp_path: Path) -> None:
    store = AudioStore(tmp_path)
    data = b"OggS fake opus page"

    sha = store.put(data, suffix=".ogg")

    assert sha == hashlib.sha256(data).hexdigest()
    assert store.path_for(sha) == tmp_path / sha[:2] / sha[2:4] / f"{sha}.ogg"
    assert store.exists(sha)
    assert store.read(sha) == data


def test_put_is_idempotent_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = AudioStore(tmp_path)

    first = store.put(b"same bytes", suffix="mp3")
    second = store.put(b"same bytes", suffix="mp3")

    assert first == second
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{first}.mp3"]


def test_concurrent_writers_of_the_same_bytes_both_succeed(tmp_path: Path) -> None:
    store = AudioStore(tmp_path)
    data = os.urandom(256 * 1024)
    results: list[str] = []

    threads = [
        threading.Thread(target=lambda: results.append(store.put(data, suffix="ogg")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(results)) == 1
    assert store.read(results[0]) == data
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_damaged_partial_file_is_replaced(tmp_path: Path) -> None:
    store = AudioStore(tmp_path)
    sha = store.put(b"complete", suffix="ogg")
    path = store.path_for(sha)
    assert path is not None
    path.write_bytes(b"cut")

    with pytest.raises(AudioIntegrityError):
        store.read(sha)
    store.put(b"complete", suffix="ogg")

    assert store.read(sha) == b"complete"


def test_missing_audio_is_absent(tmp_path: Path) -> None:
    store = AudioStore(tmp_path)
    sha = "0" * 64

    assert store.path_for(sha) is None
    assert not store.exists(sha)
    with pytest.raises(FileNotFoundError):
        store.read(sha)


@pytest.mark.parametrize(
    "name",
    [
        "../" * 5 + "etc/passwd",
        "ab/../../secret",
        "A" * 64,
        "0" * 63,
        "0" * 65,
        "0" * 64 + "\n",
        "/" + "0" * 63,
        "",
    ],
)
def test_names_that_are_not_a_sha256_are_refused(tmp_path: Path, name: str) -> None:
    store = AudioStore(tmp_path / "store")

    for call in (store.path_for, store.exists, store.read):
        with pytest.raises(ValueError, match="sha256"):
            call(name)


@pytest.mark.parametrize("suffix", ["../x", "og/g", "", ".", "toolongsuffix", "o g"])
def test_suffixes_are_plain(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        AudioStore(tmp_path).put(b"x", suffix=suffix)
