"""Gateway configuration from environment variables (prefix GATEWAY_), read once by create_app."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from audio.speech.languages import LANGUAGES
from gateway.forwarding import Network, parse_networks
from gateway.keyfiles import MIN_LENGTH, weakness
from wire import contract

# The priority of test and exercise broadcasts: below every real one.
TEST_PRIORITY: Final = 0


_LOOPBACK: Final = ("127.0.0.1", "localhost", "[::1]")
_WILDCARD: Final = ("0.0.0.0", "::")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-case, the port left out when it is the default."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = parts.hostname.lower()
    if host in _WILDCARD:
        return ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def loopback_forms(origin: str) -> frozenset[str]:
    """An origin on a loopback host in every spelling a browser on that machine may use
    (``127.0.0.1``, ``localhost``, ``[::1]``); any other origin as it is."""
    parts = urlsplit(origin)
    host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    if host not in _LOOPBACK:
        return frozenset({origin}) if origin else frozenset()
    port = parts.netloc[len(host) :]
    return frozenset(f"{parts.scheme}://{name}{port}" for name in _LOOPBACK)


class MqttTarget:
    """A parsed ``mqtt://`` or ``mqtts://`` URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, not {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("MQTT URL needs a host")
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    def redacted(self) -> str:
        auth = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"


class CapFeed(BaseModel):
    """A CAP or Atom feed polled for alerts, and the allowed CAP sender its alerts come from."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://", max_length=1000)
    sender: str = Field(min_length=1, max_length=200)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=None, extra="ignore")

    environment: Literal["development", "test", "production"] = "production"
    data_dir: Path = Path("var")
    database_url: str = ""
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_client_prefix: str = "maeul-gw"
    # The broker account the gateway manages Mosquitto's dynamic security plugin with (pushes
    # new speaker passwords, keeps users and roles as the database says). Empty: the broker's
    # users are provisioned another way (`maeul broker files`, an HTTP auth hook).
    broker_admin_username: str = ""
    broker_admin_password: SecretStr | None = None
    broker_admin_password_file: Path | None = None
    public_url: str = "http://127.0.0.1:8000"
    api_token: SecretStr | None = None

    # Signs access tokens, the same on every replica; read through gateway/keyfiles.py (required
    # in production; elsewhere the data directory's own is made on first use).
    jwt_secret: SecretStr | None = None
    jwt_secret_file: Path | None = None
    # Shared with a clustered broker (EMQX) that asks the gateway who may connect, publish and
    # subscribe (README, "Clustered brokers"); the broker sends it in X-Maeul-Hook-Secret.
    broker_hook_secret: SecretStr | None = None
    broker_hook_secret_file: Path | None = None
    # Encrypts the command-signing private keys in the database (see gateway/signing.py); a
    # database without it cannot sign. Outside production made once in the data directory.
    key_encryption_key: SecretStr | None = None
    key_encryption_key_file: Path | None = None
    # Signs the audio links speakers and residents fetch without a login; the same on every
    # replica (``gateway.keyfiles``: required in production).
    audio_url_key: SecretStr | None = None
    audio_url_key_file: Path | None = None
    # Encrypts residents' phone numbers in the database (gateway/residents/crypto.py); the
    # previous key, while numbers sealed with it are being sealed again after a rotation.
    phone_key: SecretStr | None = None
    phone_key_file: Path | None = None
    phone_key_previous: SecretStr | None = None
    phone_key_previous_file: Path | None = None
    access_token_ttl_s: int = Field(default=900, ge=60, le=86400)
    refresh_token_ttl_s: int = Field(default=14 * 86400, ge=300, le=90 * 86400)
    # Failed logins are counted per source address and username, and per source over every
    # username: past login_max_failures (login_source_max_failures), that source waits
    # login_delay_s before its next try, twice as long after each further failure, at most
    # login_max_delay_s. The account itself is never locked: its owner logs in from elsewhere.
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_source_max_failures: int = Field(default=50, ge=1, le=10_000)
    login_delay_s: int = Field(default=30, ge=1, le=3600)
    login_max_delay_s: int = Field(default=900, ge=1, le=86400)

    # Broadcasts one person may start in an hour, and village notices one village may receive in
    # an hour (0: no limit). Disaster alerts are not limited, but for a village head's: a few
    # an hour (0: no limit), never delayed, and the district's officers are told at once.
    rate_limit_user_per_hour: int = Field(default=30, ge=0, le=10_000)
    rate_limit_village_notices_per_hour: int = Field(default=4, ge=0, le=1000)
    rate_limit_head_disaster_per_hour: int = Field(default=3, ge=0, le=1000)
    # A person's disaster alerts that together reach more than one district (or the whole
    # city) within this many seconds need a second person, however they are split.
    two_person_window_s: int = Field(default=600, ge=0, le=86400)
    # What each role may send, where the city departs from the defaults (README, "People, roles
    # and rights"): JSON, e.g. {"village_head": ["village_notice", "administrative"]}.
    role_categories: dict[str, list[contract.Category]] = Field(default_factory=dict)

    # Recordings are deleted this many days after their broadcast (disaster alerts: the second
    # figure), unless held as evidence; the broadcast's record itself is kept.
    recording_retention_days: int = Field(default=90, ge=1, le=3650)
    disaster_recording_retention_days: int = Field(default=3 * 365, ge=1, le=3650)

    # A resident's consent lasts this many days unless renewed; then their number and personal
    # fields are erased by the retention job.
    resident_consent_days: int = Field(default=730, ge=1, le=3650)

    city_code: str = "jinju"
    # Who the city's CAP 1.2 documents name as their sender (CAP `sender`: no spaces, commas,
    # "<" or "&"); empty: "maeul@" and the city code.
    cap_sender: str = ""
    replica_id: str = Field(default_factory=lambda: secrets.token_hex(4))

    # Off for replicas that only serve the API, and for tests that drive the loops themselves.
    background_workers: bool = True
    ack_timeout_s: float = Field(default=15.0, gt=0)
    max_send_attempts: int = Field(default=4, ge=1, le=20)
    retry_backoff_s: float = Field(default=10.0, gt=0)
    default_expiry_s: int = Field(default=3600, ge=30, le=7 * 86400)
    heartbeat_s: float = Field(default=30.0, gt=0)
    # A speaker whose birth says the broker kept its session gets what was published to it
    # while it was away from the broker itself: the gateway waits this long before sending again
    # what it has still not acknowledged as received (0: at once, as for any other birth).
    catchup_grace_s: float = Field(default=5.0, ge=0, le=300)
    # Every play command says when to start (`play_at_ms`): this long after it is sent, so the
    # horns of a village start together (0: at once, each as its command arrives).
    play_lead_ms: int = Field(default=300, ge=0, le=5000)
    # What `GET /api/v1/devices/{speaker}/provisioning` tells a speaker: the broker it connects
    # to (unset: the gateway's own MQTT URL without its user and password, right for `make run`
    # and a broker on the same host), and its MQTT session settings.
    speaker_broker_url: str | None = None
    speaker_session_expiry_s: int = Field(default=3600, ge=60, le=7 * 86400)
    speaker_keepalive_s: int = Field(default=60, ge=5, le=3600)
    # How long an enrollment code (`POST /api/v1/speakers/{id}/enrollment`) can be redeemed.
    enrollment_code_ttl_s: int = Field(default=86400, ge=300, le=30 * 86400)
    publish_lease_s: float = Field(default=30.0, gt=0)
    poll_interval_s: float = Field(default=0.5, gt=0)
    # Acks recorded per transaction: small enough that one batch never holds the event loop long.
    ack_batch_max: int = Field(default=250, ge=1)
    # A replica stopping on purpose records the acks already handed to it for at most this long.
    shutdown_drain_s: float = Field(default=5.0, ge=0, le=60)
    # On SIGTERM, requests still running (an open event stream, an upload) get this long to end
    # before they are cancelled, so the drain above always runs within the container's stop
    # timeout; event streams end at once by themselves.
    graceful_shutdown_s: float = Field(default=10.0, ge=0, le=300)
    # Proxies (IP addresses or networks, comma-separated) whose X-Forwarded-For or Forwarded
    # header names the client; empty: trust none, the client is the socket's peer.
    trusted_proxies: str = ""

    # Audit rows one source may cause a minute without a valid credential (failed logins,
    # requests refused for want of a token), per replica; the rest are dropped.
    audit_anonymous_per_minute: int = Field(default=20, ge=1, le=10_000)
    # Signed checkpoints of the audit chain, kept outside the database (gateway/audit/
    # checkpoints.py): the seed of their Ed25519 key (a secret, see gateway/keyfiles.py), the
    # append-only file they go to (unset: <data_dir>/audit-checkpoints.jsonl) and how often.
    audit_checkpoint_key: SecretStr | None = None
    audit_checkpoint_key_file: Path | None = None
    audit_checkpoint_path: Path | None = None
    audit_checkpoint_s: float = Field(default=60.0, ge=1, le=86400)
    # Origins whose pages may open the live WebSocket (comma-separated, e.g.
    # "https://maeul.city.go.kr"); empty: the origin of public_url. A loopback origin stands for
    # every loopback spelling of it. Clients that send no Origin (not browsers) are let through.
    allowed_origins: str = ""

    # Broadcast summaries are re-read at most this often per replica (0: every request) and never
    # served older than the second figure, so the live boards trail the speakers by a second at
    # most; see gateway/broadcasts/status_cache.py.
    status_cache_s: float = Field(default=0.5, ge=0, le=1)
    status_max_stale_s: float = Field(default=1.0, ge=0, le=1)

    inline_audio_max_bytes: int = Field(default=256 * 1024, ge=0)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_audio_seconds: float = Field(default=600.0, gt=0)
    target_lufs: float = -16.0
    opus_bitrate: int = Field(default=24000, ge=6000, le=128000)
    transcode_workers: int = Field(default=1, ge=1, le=16)
    # More worker processes that serve only disaster alerts (the highest priority), so one
    # starts at once however busy the others are with uploads and previews.
    transcode_urgent_workers: int = Field(default=1, ge=0, le=4)
    # Spoken previews one person may have running or waiting at once, and start in a minute
    # (per replica); beyond, 429 preview_busy or preview_rate_limited.
    preview_concurrency_per_person: int = Field(default=2, ge=1, le=100)
    preview_per_minute_per_person: int = Field(default=10, ge=1, le=10_000)
    # Typed text is spoken by this engine (see audio/speech/engine.py to plug in another).
    speech_engine: str = "espeak"
    # Languages spoken after Korean when a broadcast carries a text in them, in this order,
    # comma-separated primary tags (e.g. "vi,zh"), in villages with no languages of their own;
    # see audio/speech/languages.py.
    spoken_languages: str = ""
    transcode_timeout_s: float = Field(default=120.0, gt=0)
    # Priority by category (higher interrupts lower on a speaker), as JSON, e.g.
    # GATEWAY_PRIORITIES='{"crime_prevention": 25}'; categories left out keep their default.
    priorities: dict[contract.Category, int] = Field(default_factory=dict)

    # Quiet hours in the city's local time ("HH:MM-HH:MM", "off" for none): broadcasts other than
    # disaster alerts are deferred to their end or refused. Districts may override the window.
    quiet_hours: str = "21:00-07:00"
    quiet_hours_policy: Literal["defer", "refuse"] = "defer"
    # Test and exercise broadcasts: "announce" plays them framed by a spoken "this is a test",
    # "log" has speakers check, journal and ack them without a sound.
    test_playback: Literal["announce", "log"] = "announce"
    # How often each replica looks for due schedules, and how late an occurrence may still fire
    # (after downtime); older ones are recorded as skipped.
    schedule_poll_s: float = Field(default=1.0, gt=0, le=60)
    schedule_grace_s: float = Field(default=600.0, ge=0, le=86400)

    # SMS through Kannel's smsbox (README, "SMS"). Empty URL: this gateway sends no SMS.
    sms_sendsms_url: str = ""
    sms_username: str = ""
    sms_password: SecretStr | None = None
    sms_sender: str = ""
    # Where Kannel reaches this gateway with delivery reports; empty: public_url.
    sms_dlr_base_url: str = ""
    # Message parts (one part: 70 Korean characters; 67 once split) a city may send per local day.
    sms_daily_budget: int = Field(default=20000, ge=0)
    # The most parts one message may take; the sendsms user's max-messages must allow as many.
    sms_max_parts: int = Field(default=10, ge=1, le=255)
    sms_max_attempts: int = Field(default=5, ge=1, le=50)
    sms_retry_backoff_s: float = Field(default=5.0, gt=0, le=3600)
    sms_poll_s: float = Field(default=1.0, gt=0, le=60)
    # Messages each replica's SMS worker has in flight to smsbox at once.
    sms_send_concurrency: int = Field(default=8, ge=1, le=64)
    # Send to the seeded, never-assigned numbers 010-0XXX-XXXX (a test SMSC only).
    sms_allow_synthetic: bool = False
    # Signs delivery-report links (HMAC); the same on every replica (``gateway.keyfiles``:
    # required in production when SMS is on). Numbers are sealed with ``phone_key``.
    sms_dlr_key: SecretStr | None = None
    # The default fallback rule (a city sets its own per category): seconds a village's speakers
    # have to all play before its consenting residents are told by phone.
    fallback_disaster_after_s: int = Field(default=120, ge=0, le=86_400)
    fallback_after_s: int = Field(default=600, ge=0, le=86_400)
    fallback_poll_s: float = Field(default=1.0, gt=0, le=60)
    sms_dlr_key_file: Path | None = None

    # CAP 1.2 in (README, "CAP 1.2 in"): the table from CAP event, urgency, severity and
    # certainty to a Maeul category, as JSON (a list of rules, the first that matches wins;
    # empty: the default table of gateway/cap/mapping.py); the CAP or Atom feeds polled, as
    # JSON [{"url": ..., "sender": ...}] (each entry must come from that allowed sender), and how
    # often each is polled.
    cap_mapping: list[dict[str, Any]] = Field(default_factory=list)
    cap_feeds: list[CapFeed] = Field(default_factory=list)
    cap_poll_s: float = Field(default=60.0, ge=1, le=86400)
    # Web push to the residents' page (README, "Web push"): the VAPID subject push services may
    # contact (mailto: or https:). Empty: this gateway sends no push.
    push_vapid_subject: str = ""
    # The VAPID private key, the same on every replica (``gateway.keyfiles``: required in
    # production when push is on; see gateway/push/keys.py for its form).
    push_vapid_private_key: SecretStr | None = None
    push_vapid_private_key_file: Path | None = None
    # Tests and demos only (refused in production): accept http://127.0.0.1 push endpoints.
    push_allow_loopback_endpoints: bool = False
    # How long a push service keeps a message for a phone that is away.
    push_ttl_s: int = Field(default=12 * 3600, ge=60, le=28 * 86400)
    push_max_attempts: int = Field(default=5, ge=1, le=50)
    push_retry_backoff_s: float = Field(default=5.0, gt=0, le=3600)
    push_poll_s: float = Field(default=1.0, gt=0, le=60)
    # Messages a worker has in flight at once.
    push_concurrency: int = Field(default=8, ge=1, le=64)
    # Subscription changes one address may make a minute (per replica); beyond, 429.
    push_subscriptions_per_minute: int = Field(default=10, ge=1, le=10_000)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @field_validator("spoken_languages")
    @classmethod
    def _languages(cls, value: str) -> str:
        for tag in filter(None, (t.strip() for t in value.split(","))):
            if tag.lower() not in LANGUAGES:
                raise ValueError(f"spoken_languages: unknown language {tag!r}")
        return value

    @property
    def spoken_language_tags(self) -> tuple[str, ...]:
        return tuple(t.strip().lower() for t in self.spoken_languages.split(",") if t.strip())

    @field_validator("city_code")
    @classmethod
    def _segment(cls, value: str) -> str:
        if not contract.is_valid_segment(value):
            raise ValueError("city_code must match [A-Za-z0-9_-]{1,64}")
        return value

    @field_validator("cap_sender")
    @classmethod
    def _cap_sender(cls, value: str) -> str:
        if any(c in value for c in " ,<&\t\n"):
            raise ValueError("cap_sender must not contain spaces, commas, '<' or '&'")
        return value

    @property
    def cap_sender_id(self) -> str:
        return self.cap_sender or f"maeul@{self.city_code}"

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        from gateway.schedules.quiet import parse_window

        window = parse_window(value)
        return "off" if window is None else window.label

    @field_validator("cap_mapping")
    @classmethod
    def _cap_mapping(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from gateway.cap.mapping import MappingRule

        for rule in value:
            MappingRule.model_validate(rule)
        return value

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, value: dict[contract.Category, int]) -> dict[contract.Category, int]:
        merged = {**contract.DEFAULT_PRIORITY, **value}
        if any(not 1 <= p <= 1000 for p in merged.values()):
            raise ValueError("priorities must be between 1 and 1000 (0 is for tests)")
        if merged[contract.Category.DISASTER] != max(merged.values()):
            raise ValueError("disaster must keep the highest priority")
        return merged

    def priority_of(self, category: contract.Category, mode: str = "live") -> int:
        """A test or exercise never interrupts a real broadcast, and anything real interrupts
        it: it gets the lowest priority whatever its category."""
        if mode != "live":
            return TEST_PRIORITY
        return self.priorities.get(category, contract.DEFAULT_PRIORITY[category])

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt(cls, value: str) -> str:
        MqttTarget(value)
        return value

    @field_validator("speaker_broker_url")
    @classmethod
    def _speaker_broker(cls, value: str | None) -> str | None:
        if value is not None and MqttTarget(value).username is not None:
            raise ValueError("speaker_broker_url must not carry a user or password")
        return value

    @field_validator("push_vapid_subject")
    @classmethod
    def _vapid_subject(cls, value: str) -> str:
        # As push services (and py_vapid) take it: a mail address with a domain, or an https URL.
        if value and not re.fullmatch(
            r"mailto:[^@\s]+@(localhost|[\w-]+(\.[\w-]+)+)|https://[\w-]+(\.[\w-]+)+(/\S*)?",
            value,
        ):
            raise ValueError(
                "push_vapid_subject must be mailto:someone@example.kr or https://example.kr"
            )
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'maeul.db'}"
        if not self.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("database_url must be sqlite+aiosqlite:// or postgresql+asyncpg://")
        if self.environment == "production":
            if self.api_token is None:
                raise ValueError(
                    f"GATEWAY_API_TOKEN must be set in production to a random secret of at least "
                    f"{MIN_LENGTH} characters; `maeul secret` prints one"
                )
            problem = weakness(self.api_token.get_secret_value())
            if problem is not None:
                raise ValueError(f"GATEWAY_API_TOKEN is too weak to be a secret: {problem}")
            if self.push_allow_loopback_endpoints:
                raise ValueError("GATEWAY_PUSH_ALLOW_LOOPBACK_ENDPOINTS is for tests and demos")
        return self

    @property
    def checkpoint_file(self) -> Path:
        return self.audit_checkpoint_path or self.data_dir / "audit-checkpoints.jsonl"

    @property
    def origins(self) -> frozenset[str]:
        """The origins allowed to open the live WebSocket (see ``allowed_origins``), each
        loopback one in all its spellings. Empty when neither names a host (a public URL on
        0.0.0.0): then a page may connect only to the host it was itself loaded from."""
        listed = [o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",")]
        chosen = [o for o in listed if o] or [origin_of(self.public_url)]
        return frozenset(form for o in chosen if o for form in loopback_forms(o))

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if item and origin_of(item) != item.rstrip("/").lower():
                raise ValueError(f"not an origin (scheme://host[:port]): {item!r}")
        return value

    @property
    def mqtt(self) -> MqttTarget:
        return MqttTarget(self.mqtt_url)

    @property
    def broker_url_for_speakers(self) -> str:
        if self.speaker_broker_url is not None:
            return self.speaker_broker_url
        target = self.mqtt
        return f"{'mqtts' if target.tls else 'mqtt'}://{target.host}:{target.port}"

    @property
    def sms_enabled(self) -> bool:
        return bool(self.sms_sendsms_url)

    @property
    def push_enabled(self) -> bool:
        return bool(self.push_vapid_subject)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
