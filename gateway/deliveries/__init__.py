"""Deliveries: one per speaker and broadcast, moved only by the transition table."""
