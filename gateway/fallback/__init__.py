"""Automatic fallback to residents' phones when a village's speakers miss a broadcast."""
