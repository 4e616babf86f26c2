"""Enrollment codes: the one-time code an installer types on a new speaker for its configuration."""
