"""Audio fixtures: recordings and hostile files generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import media


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio-media")


@pytest.fixture(scope="session")
def recordings(media_dir: Path) -> dict[str, Path]:
    """One 3-second speech-like recording of every supported kind."""
    return {
        kind: media.make_recording(media_dir / f"speech-{kind}.bin", kind, 3.0)
        for kind in media.RECORDING_KINDS
    }


@pytest.fixture(scope="session")
def phone_recording(media_dir: Path) -> Path:
    """A longer, quiet AAC recording with a second of silence at each end."""
    return media.make_recording(media_dir / "phone.m4a", "m4a", 8.0, level_db=-30.0)
