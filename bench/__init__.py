"""Benchmarks: fan-out against a bare-broker floor, transcoding, API latency and memory."""
