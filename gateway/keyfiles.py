"""Secrets kept outside the database: where each comes from, and how strong it must be.

A secret named NAME (a field of `Settings`, e.g. ``jwt_secret``) comes from, in order:

1. ``GATEWAY_NAME``: the secret itself;
2. ``GATEWAY_NAME_FILE``: a file holding it (a container or systemd secret), surrounding
   whitespace ignored;
3. outside production only: ``<data_dir>/secrets/NAME``, created on first use with 256 random
   bits, mode 0600 in a 0700 directory, so a development machine and the tests never run on a
   key anyone could derive.

In production a missing or weak secret stops the gateway at start with a message naming the
variable; replicas must share these secrets, so none is invented there. Weak means shorter than
32 characters or made of fewer than 10 distinct characters (``maeul secret`` prints a good one).

Exceptions::

    SecretError    a secret is missing, weak or unreadable (ValueError; the message says which)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import SecretStr

if TYPE_CHECKING:
    from gateway.settings import Settings

MIN_LENGTH: Final = 32
MIN_DISTINCT: Final = 10
DIRECTORY: Final = "secrets"


class SecretError(ValueError):
    """A secret is missing, weak or unreadable."""


def new_secret() -> str:
    """A fresh secret: 256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def weakness(value: str) -> str | None:
    """Why `value` is too weak to be a secret, or None."""
    if len(value) < MIN_LENGTH:
        return f"it has {len(value)} characters, fewer than {MIN_LENGTH}"
    if len(set(value)) < MIN_DISTINCT:
        return f"it uses fewer than {MIN_DISTINCT} distinct characters"
    return None


def _variable(name: str) -> str:
    return f"GATEWAY_{name.upper()}"


def _from_settings(settings: Settings, name: str) -> tuple[str, str] | None:
    """(value, where it came from) from the setting or its _FILE companion, or None."""
    given = getattr(settings, name, None)
    if isinstance(given, SecretStr):
        return given.get_secret_value(), _variable(name)
    if isinstance(given, str) and given:
        return given, _variable(name)
    path = getattr(settings, f"{name}_file", None)
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip(), f"{_variable(name)}_FILE ({path})"
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"{_variable(name)}_FILE: cannot read {path}: {exc}") from exc


def local_path(settings: Settings, name: str) -> Path:
    return settings.data_dir / DIRECTORY / name


def _local(settings: Settings, name: str) -> str:
    """The development secret in the data directory, made on first use (never overwritten)."""
    path = local_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        value = new_secret()
        out.write(value + "\n")
    return value


def load_secret(settings: Settings, name: str) -> bytes:
    """The secret `name` as bytes (see the module's docstring for where it comes from)."""
    found = _from_settings(settings, name)
    if found is None:
        if settings.environment == "production":
            raise SecretError(
                f"{_variable(name)} (or {_variable(name)}_FILE) must be set in production to a "
                f"random secret of at least {MIN_LENGTH} characters; `maeul secret` prints one"
            )
        return _local(settings, name).encode()
    value, origin = found
    problem = weakness(value)
    if problem is not None:
        raise SecretError(f"{origin} is too weak to be a secret: {problem}")
    return value.encode()


def check_secrets(settings: Settings, names: Iterable[str]) -> None:
    """Load every secret in `names`, and raise one SecretError naming every one missing or weak,
    so an operator fixes them all in one go instead of one start at a time."""
    problems = []
    for name in names:
        try:
            load_secret(settings, name)
        except SecretError as exc:
            problems.append(str(exc))
    if problems:
        raise SecretError("; ".join(problems))
