"""SMS to residents through Kannel: an outbox of messages, a worker that sends them, and the
delivery reports Kannel calls back with (README, "SMS")."""
