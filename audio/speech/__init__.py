"""Text-to-speech for announcements: normalised Korean text, a pluggable voice, broadcast WAV."""
