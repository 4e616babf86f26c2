"""Request and response shapes of the device-security API: credentials, accounts, events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

AccountRole = Literal["gateway", "monitor"]
# ack_flood: a speaker's acks dropped unread past an allowance (reason per_command: too many for
# one command; unmatched: too many matching none of its deliveries); its count is the acks.
EventKind = Literal["command_rejected", "unknown_speaker_ack", "bad_ack", "ack_flood"]
Username = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$", examples=["gateway", "healthcheck"])
]


class SpeakerCredentials(BaseModel):
    """A speaker's new broker password. Shown this once: the gateway keeps only its hash."""

    speaker_id: int
    username: str = Field(description="The MQTT user name: the speaker's code.")
    client_id: str = Field(description="The MQTT client id the speaker connects with.")
    password: str = Field(description="The new password; every earlier one stops working.")
    issued_at: datetime


class BrokerAccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    role: AccountRole = Field(
        description="gateway: publishes commands and reads acks; monitor: reads $SYS only."
    )
    password: SecretStr | None = Field(
        default=None,
        min_length=24,
        description="Leave out to have one generated and shown once.",
    )


_CLIENT_ID = Field(
    description="The only client id the account may connect under (a monitor's is its user "
    "name); null for a gateway, which connects with a fresh id each start."
)


class BrokerAccountIssued(BaseModel):
    username: str
    role: AccountRole
    client_id: str | None = _CLIENT_ID
    password: str | None = Field(
        description="The generated password, shown this once; null when the request gave one."
    )
    issued_at: datetime


class BrokerAccountRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    role: AccountRole
    client_id: str | None = _CLIENT_ID
    issued_at: datetime


class SecurityEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime = Field(description="When the gateway received the report.")
    kind: EventKind
    speaker_code: str | None = Field(description="The speaker whose topic the report came on.")
    command_id: str | None
    broadcast_id: str | None
    reason: str | None = Field(examples=["bad_signature", "expired", "out_of_scope"])
    details: dict[str, Any]
    count: int = Field(
        ge=1,
        description="Reports merged into this event: the same command reported again, or, past "
        "a few distinct commands of one kind and reason from one speaker within five minutes, "
        "every further one (a flooding speaker fills a handful of rows, not thousands).",
    )
    last_at: datetime = Field(description="When the gateway received the last merged report.")


class SecurityEventPage(BaseModel):
    items: list[SecurityEventRead]
    total: int
    limit: int
    offset: int
