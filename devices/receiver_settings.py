"""An indoor receiver's household settings (volume, quiet-hours hold), learned from its
provisioning document: staff change them at the gateway, the receiver asks again now and then.

Exceptions::

    SettingsUnavailable     the document could not be fetched or read (the receiver keeps what
                            it had, and asks again sooner)
"""

from __future__ import annotations

from typing import Final

import httpx
from pydantic import ValidationError

from wire import contract

PROVISIONING_PATH: Final = "/api/v1/devices/{speaker}/provisioning"
# How often a receiver asks: a household's change is heard within the hour.
REFRESH_S: Final = 3600.0
# After a failed ask.
RETRY_S: Final = 60.0


class SettingsUnavailable(Exception):
    """The provisioning document could not be fetched or read."""


async def fetch_receiver_settings(
    http: httpx.AsyncClient, gateway_url: str, speaker: str, password: str
) -> contract.ReceiverSettings | None:
    """The household's settings from the speaker's own provisioning document (HTTP Basic: its
    id and broker password); None when the gateway has none for it (not a receiver)."""
    url = gateway_url.rstrip("/") + PROVISIONING_PATH.format(speaker=speaker)
    try:
        response = await http.get(url, auth=(speaker, password))
    except httpx.HTTPError as exc:
        raise SettingsUnavailable(f"cannot reach {url}: {exc!r}") from None
    if response.status_code != 200:
        raise SettingsUnavailable(f"{url} answered HTTP {response.status_code}")
    try:
        return contract.Provisioning.model_validate_json(response.content).receiver
    except ValidationError:
        raise SettingsUnavailable(f"{url} did not answer a provisioning document") from None
