"""Tests of the audio package."""
