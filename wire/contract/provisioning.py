"""What a speaker needs to join the network: the provisioning document the gateway serves it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import Field

from wire.contract.base import PROTOCOL_VERSION, _Message
from wire.contract.commands import Command, SpeakerIdentity
from wire.contract.enums import Category
from wire.contract.quiet import HHMM, QuietWindow, city_zone, parse_hhmm
from wire.contract.signing import KeyRing
from wire.contract.topics import (
    ack_topic,
    live_subscriptions,
    presence_topic,
    speaker_client_id,
)

# A receiver whose household set no volume plays at its own level: its output unscaled.
FULL_VOLUME: Final = 100


class QuietHours(_Message):
    """A daily window in local time: the quiet hours of the receiver's district."""

    start: str = Field(
        pattern=f"^{HHMM}$", description="Start, `HH:MM` local time; this minute is quiet."
    )
    end: str = Field(
        pattern=f"^{HHMM}$",
        description="End, `HH:MM` local time, not quiet; before `start` it wraps past midnight.",
    )
    timezone: str = Field(
        max_length=64, description="The IANA time zone of `start` and `end` (`Asia/Seoul`)."
    )

    def _window(self) -> QuietWindow:
        return QuietWindow(parse_hhmm(self.start), parse_hhmm(self.end))

    def quiet_until_ms(self, at_ms: int) -> int | None:
        """When the window that holds `at_ms` ends (Unix ms), or None when `at_ms` is not quiet."""
        moment = datetime.fromtimestamp(at_ms / 1000, UTC)
        zone = city_zone(self.timezone)
        window = self._window()
        if not window.contains(moment, zone):
            return None
        return int(window.ends_after(moment, zone).timestamp() * 1000)


class ReceiverSettings(_Message):
    """What an indoor receiver's household chose: how loud, and whether notices wait for the
    end of quiet hours. A disaster alert ignores both: it plays at once, at full volume."""

    volume: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description=(
            "Output volume, 0-100: the PCM written to the output is scaled by `volume`/100 (its "
            "`level_dbfs` is that output's). 0 mutes notices: they are acked `failed`/`muted`. "
            "Absent: the receiver's own level (100)."
        ),
    )
    hold_quiet: bool = Field(
        default=False,
        description=(
            "Hold a notice other than a disaster alert that arrives in `quiet_hours`: ack it "
            "`received` with reason `held_quiet_hours` and play it when they end, unless it "
            "expires or is cancelled first."
        ),
    )
    quiet_hours: QuietHours | None = Field(
        default=None, description="The district's quiet hours; absent: it has none."
    )

    def volume_for(self, command: Command) -> int:
        if command.category is Category.DISASTER or self.volume is None:
            return FULL_VOLUME
        return self.volume

    def held_until_ms(self, command: Command, at_ms: int) -> int | None:
        """Until when a command arriving at `at_ms` waits (Unix ms), or None: it plays now."""
        if not self.hold_quiet or self.quiet_hours is None:
            return None
        if command.category is Category.DISASTER:
            return None
        return self.quiet_hours.quiet_until_ms(at_ms)


class Provisioning(_Message):
    """What a speaker needs to join the network, from the gateway's
    ``GET /api/v1/devices/{speaker}/provisioning``: the broker, its session settings, its topics
    and the key ring its commands are signed with."""

    v: Literal[1] = Field(
        default=PROTOCOL_VERSION, description="Version of the provisioning document; always 1."
    )
    identity: SpeakerIdentity = Field(
        description="Where the speaker sits; the segments of its topics and its scope checks."
    )
    broker_url: str = Field(
        max_length=500,
        description=(
            "The broker to connect to: `mqtt://host:port` or `mqtts://host:port` (TLS). The "
            "gateway's `speaker_broker_url` setting."
        ),
    )
    client_id: str = Field(
        max_length=100,
        description="The MQTT client id to connect with (stable: the session outlives it).",
    )
    username: str = Field(
        max_length=100,
        description="The MQTT user name; the password is the broker password issued to it.",
    )
    session_expiry_s: int = Field(
        ge=0,
        description=(
            "The MQTT 5 Session Expiry Interval to connect with (Clean Start 0): how long the "
            "broker keeps the speaker's subscriptions and queued commands while it is away."
        ),
    )
    keepalive_s: int = Field(
        ge=5, le=3600, description="The MQTT keep-alive to connect with, in seconds."
    )
    heartbeat_s: float = Field(
        gt=0, description="Publish a `heartbeat` presence at least this often, in seconds."
    )
    offline_after_s: float = Field(
        gt=0,
        description="The gateway counts the speaker offline after hearing nothing for this long.",
    )
    subscriptions: tuple[str, ...] = Field(
        description="The command topics to subscribe to (QoS 1)."
    )
    live_subscriptions: tuple[str, ...] = Field(
        description="The live topics to subscribe to (QoS 1; audio frames come at 0)."
    )
    ack_topic: str = Field(description="Where to publish acknowledgements.")
    presence_topic: str = Field(description="Where to publish birth, heartbeats and the Will.")
    audio_url: str = Field(
        max_length=500,
        description=(
            "Template of the audio URLs (`{sha256}` replaced); commands carry full URLs, signed "
            "and expiring with the command (see `AudioRef.url`): fetch those as given."
        ),
    )
    keyring_url: str = Field(
        max_length=500, description="Where to fetch the key ring after a key rotation."
    )
    keyring: KeyRing = Field(description="The key ring now, to start from.")
    receiver: ReceiverSettings | None = Field(
        default=None,
        description=(
            "Indoor receivers (kind `household_receiver`) only: the household's volume and "
            "quiet-hours hold. Fetch the document again to learn a change."
        ),
    )


def provisioning_for(
    identity: SpeakerIdentity,
    *,
    broker_url: str,
    gateway_url: str,
    session_expiry_s: int,
    keepalive_s: int,
    heartbeat_s: float,
    keyring: KeyRing,
    receiver: ReceiverSettings | None = None,
) -> Provisioning:
    base = gateway_url.rstrip("/")
    return Provisioning(
        identity=identity,
        broker_url=broker_url,
        client_id=speaker_client_id(identity.speaker),
        username=identity.speaker,
        session_expiry_s=session_expiry_s,
        keepalive_s=keepalive_s,
        heartbeat_s=heartbeat_s,
        offline_after_s=3 * heartbeat_s,
        subscriptions=tuple(identity.subscriptions()),
        live_subscriptions=tuple(
            live_subscriptions(identity.city, identity.district, identity.village)
        ),
        ack_topic=ack_topic(identity.city, identity.speaker),
        presence_topic=presence_topic(identity.city, identity.speaker),
        audio_url=f"{base}/api/v1/audio/{{sha256}}",
        keyring_url=f"{base}/api/v1/keys/ring",
        keyring=keyring,
        receiver=receiver,
    )
