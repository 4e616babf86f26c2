"""Broadcasts: what was sent, to whom, with which audio, and the outbox that publishes it."""
