"""The audio path: safe decoding of uploads, clean-up, chimes, encoding, storage and playback."""
