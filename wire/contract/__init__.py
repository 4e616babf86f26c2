"""The MQTT wire contract between the gateway and speakers: topics, payloads, QoS and signatures.

This package is the only place that knows topic strings and payload shapes. It imports neither
FastAPI nor SQLAlchemy, so the gateway, the simulator and the device agent all use the same code,
and `openapi/asyncapi.yaml` is generated from it: the prose on its models, fields, enums, topics
and messages is the document's. Import from here; the modules below are its parts:

    base          version, size limits, QoS, the payload base class and its JSON codec
    enums         categories, codecs, ack statuses and reasons, each with its prose
    topics        topic strings and subscriptions
    channels      what each topic carries and who does what on it, for the generated document
    commands      commands to speakers, their parts, and the checks a speaker makes
    reports       what speakers publish: acks and presence
    signing       command signatures and the gateway's key ring
    provisioning  what a speaker needs to join
    live          a live broadcast's binary frames
    receipts      a speaker's signed proof of play

Topic tree (``{c}`` city code, ``{d}`` district code, ``{v}`` village code, ``{s}`` speaker id)::

    maeul/v1/{c}/cmd/all            commands for every speaker of the city  (gateway -> speakers)
    maeul/v1/{c}/cmd/district/{d}   commands for every speaker of a district
    maeul/v1/{c}/cmd/village/{v}    commands for every speaker of a village
    maeul/v1/{c}/cmd/speaker/{s}    commands for one speaker (retries, catch-up, resend)
    maeul/v1/{c}/ack/{s}            a speaker's own acknowledgements          (speaker -> gateway)
    maeul/v1/{c}/presence/{s}       birth, heartbeat and will (retained)      (speaker -> gateway)
    maeul/v1/{c}/live/...           live frames, per group as for commands    (gateway -> speakers)

The broker does the fan-out for group topics; every speaker still acknowledges on its own topic,
and the gateway reads acks and presence through MQTT 5 shared subscriptions so that any number
of gateway replicas split them. A broker PUBACK only says the broker has the command; a delivery
moves on only when the speaker's own ack arrives.

Exceptions::

    WireError            a payload or topic that does not follow this contract
"""

from wire.contract.base import (
    ACK_QOS,
    CLOCK_SKEW_MS,
    COMMAND_QOS,
    HEARTBEAT_QOS,
    MAX_ACK_BYTES,
    MAX_COMMAND_BYTES,
    MAX_PRESENCE_BYTES,
    PRESENCE_QOS,
    PROTOCOL_VERSION,
    SHARE_GROUP,
    TOPIC_ROOT,
    CommandId,
    MessageDocs,
    Qos,
    Segment,
    Sha256Hex,
    WireError,
    describe,
    new_id,
    new_nonce,
    now_ms,
)
from wire.contract.channels import (
    CHANNELS,
    OPERATIONS,
    SEGMENT_DOCS,
    Channel,
    Operation,
)
from wire.contract.commands import (
    COMMAND_MESSAGE,
    MAX_SUPERSEDES,
    AudioRef,
    Command,
    LiveStream,
    Scope,
    SpeakerIdentity,
    check_command,
    command_ids_of,
    decode_command,
    encode_command,
    inline_audio,
    message_expiry_seconds,
    signature_refusal,
)
from wire.contract.enums import (
    COPY_REFUSALS,
    DEFAULT_PRIORITY,
    ENUM_DOCS,
    AckStatus,
    Category,
    Codec,
    EnumDocs,
    FailReason,
    RejectReason,
)
from wire.contract.live import (
    LIVE_AUDIO_MESSAGE,
    LIVE_CONTROL_MESSAGE,
    LIVE_CONTROL_QOS,
    LIVE_FRAME_DOC,
    LIVE_FRAME_QOS,
    LIVE_HEADER_BYTES,
    LIVE_MAGIC,
    LIVE_START_FLAG,
    LIVE_SUBSCRIPTION_QOS,
    LIVE_TAG_BYTES,
    MAX_LIVE_FRAME_BYTES,
    MAX_LIVE_PAYLOAD_BYTES,
    EndReason,
    LiveFrame,
    LiveKind,
    decode_live_frame,
    encode_live_frame,
    new_live_key,
)
from wire.contract.provisioning import (
    Provisioning,
    provisioning_for,
)
from wire.contract.receipts import (
    RECEIPT_DOMAIN,
    RECEIPT_KEY_DOMAIN,
    Receipt,
    new_receipt_key,
    receipt_key_enrollment,
    receipt_key_proof_bytes,
    receipt_of,
    receipt_public_key,
    receipt_signing_bytes,
    sign_receipt,
    verify_receipt,
    verify_receipt_key_proof,
)
from wire.contract.reports import (
    ACK_MESSAGE,
    PRESENCE_BIRTH_MESSAGE,
    PRESENCE_HEARTBEAT_MESSAGE,
    PRESENCE_WILL_MESSAGE,
    Ack,
    Presence,
    decode_ack,
    decode_presence,
    encode_ack,
    encode_presence,
)
from wire.contract.signing import (
    MAX_KEYRING_BYTES,
    KeyEndorsement,
    KeyId,
    KeyRevocation,
    KeyRing,
    SignatureCheck,
    decode_keyring,
    endorse_key,
    revoke_key,
    sign_command,
)
from wire.contract.topics import (
    SPEAKER_CLIENT_PREFIX,
    ack_subscription,
    ack_topic,
    command_topic_all,
    command_topic_district,
    command_topic_speaker,
    command_topic_village,
    is_live_topic,
    is_valid_segment,
    live_subscriptions,
    live_topic_all,
    live_topic_district,
    live_topic_village,
    parse_speaker_topic,
    presence_subscription,
    presence_topic,
    speaker_client_id,
    speaker_subscriptions,
)

__all__ = [
    "ACK_MESSAGE",
    "ACK_QOS",
    "CHANNELS",
    "CLOCK_SKEW_MS",
    "COMMAND_MESSAGE",
    "COMMAND_QOS",
    "COPY_REFUSALS",
    "DEFAULT_PRIORITY",
    "ENUM_DOCS",
    "HEARTBEAT_QOS",
    "LIVE_AUDIO_MESSAGE",
    "LIVE_CONTROL_MESSAGE",
    "LIVE_CONTROL_QOS",
    "LIVE_FRAME_DOC",
    "LIVE_FRAME_QOS",
    "LIVE_HEADER_BYTES",
    "LIVE_MAGIC",
    "LIVE_START_FLAG",
    "LIVE_SUBSCRIPTION_QOS",
    "LIVE_TAG_BYTES",
    "MAX_ACK_BYTES",
    "MAX_COMMAND_BYTES",
    "MAX_KEYRING_BYTES",
    "MAX_LIVE_FRAME_BYTES",
    "MAX_LIVE_PAYLOAD_BYTES",
    "MAX_PRESENCE_BYTES",
    "MAX_SUPERSEDES",
    "OPERATIONS",
    "PRESENCE_BIRTH_MESSAGE",
    "PRESENCE_HEARTBEAT_MESSAGE",
    "PRESENCE_QOS",
    "PRESENCE_WILL_MESSAGE",
    "PROTOCOL_VERSION",
    "RECEIPT_DOMAIN",
    "RECEIPT_KEY_DOMAIN",
    "SEGMENT_DOCS",
    "SHARE_GROUP",
    "SPEAKER_CLIENT_PREFIX",
    "TOPIC_ROOT",
    "Ack",
    "AckStatus",
    "AudioRef",
    "Category",
    "Channel",
    "Codec",
    "Command",
    "CommandId",
    "EndReason",
    "EnumDocs",
    "FailReason",
    "KeyEndorsement",
    "KeyId",
    "KeyRevocation",
    "KeyRing",
    "LiveFrame",
    "LiveKind",
    "LiveStream",
    "MessageDocs",
    "Operation",
    "Presence",
    "Provisioning",
    "Qos",
    "Receipt",
    "RejectReason",
    "Scope",
    "Segment",
    "Sha256Hex",
    "SignatureCheck",
    "SpeakerIdentity",
    "WireError",
    "ack_subscription",
    "ack_topic",
    "check_command",
    "command_ids_of",
    "command_topic_all",
    "command_topic_district",
    "command_topic_speaker",
    "command_topic_village",
    "decode_ack",
    "decode_command",
    "decode_keyring",
    "decode_live_frame",
    "decode_presence",
    "describe",
    "encode_ack",
    "encode_command",
    "encode_live_frame",
    "encode_presence",
    "endorse_key",
    "inline_audio",
    "is_live_topic",
    "is_valid_segment",
    "live_subscriptions",
    "live_topic_all",
    "live_topic_district",
    "live_topic_village",
    "message_expiry_seconds",
    "new_id",
    "new_live_key",
    "new_nonce",
    "new_receipt_key",
    "now_ms",
    "parse_speaker_topic",
    "presence_subscription",
    "presence_topic",
    "provisioning_for",
    "receipt_key_enrollment",
    "receipt_key_proof_bytes",
    "receipt_of",
    "receipt_public_key",
    "receipt_signing_bytes",
    "revoke_key",
    "sign_command",
    "sign_receipt",
    "signature_refusal",
    "speaker_client_id",
    "speaker_subscriptions",
    "verify_receipt",
    "verify_receipt_key_proof",
]
