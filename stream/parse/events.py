"""Contract events (§1): parsing, validation and the machine-readable reasons for rejecting one.

A bad message is data, not an exception: :func:`parse` returns a :class:`Rejection` whose
``reason`` becomes the ``callstream-error`` header on the dead-letter topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    TypeAdapter,
    ValidationError,
)
from pydantic.dataclasses import dataclass as event_class

from stream.config import ID_PATTERN
from stream.vocabulary import AgentState, AttemptResult

#: Events dated further ahead of the wall clock than this are refused.
MAX_FUTURE_MS = 5 * 60 * 1000
SCHEMA_VERSION = 1

#: What a caller number may carry around its digits (contract §1); dropped.
_CALLER_PUNCTUATION = str.maketrans("", "", "+ -.()")
_CALLER_DIGITS = re.compile(r"[0-9]{1,20}", re.ASCII)
#: ``priority`` is a 32-bit signed integer (contract §1).
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1
_DATE_PREFIX = re.compile(r"\d{4}-\d\d-\d\d[Tt ]")
#: The usual form of ``ts``, which the standard library reads in one call (pydantic's
#: parser, with the validators around it, takes 1.7 times as long); anything else goes to
#: pydantic's parser. ASCII digits only (also a quarter faster to match).
_USUAL_TS = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:[0-5]\d)\Z", re.ASCII)


def _epoch_seconds(value: Any) -> Any:
    """A number is Unix epoch seconds; a string must be an RFC 3339 date-time."""
    if type(value) is str:
        if _DATE_PREFIX.match(value):
            return value
        raise ValueError("ts is not RFC 3339")  # pydantic would read digits as epoch time
    if isinstance(value, bool):
        raise ValueError("ts is not a time")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("ts is out of range") from None
    return value


def _to_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


#: Any ``ts`` to epoch milliseconds: a number is Unix epoch seconds, a string an RFC 3339
#: date-time with an offset (pydantic's own parser; one without is refused).
_ANY_TS: TypeAdapter[int] = TypeAdapter(Annotated[  # type: ignore[arg-type]
    AwareDatetime, Field(strict=False), BeforeValidator(_epoch_seconds), AfterValidator(_to_ms)])


#: The contract's own form, ``2026-11-22T10:15:30.250Z``: its second (the first 19
#: characters) -> that second in epoch milliseconds, for the seconds met lately. Events
#: come about in time order, so a second comes many times in a row; reading one from here
#: takes half as long as parsing it.
_SECONDS: dict[str, int] = {}
_SECONDS_KEPT = 4096


def _ts_ms(value: Any) -> int:
    """Event time in epoch milliseconds: the usual form by ``fromisoformat`` (the
    contract's own form by its second, once that second was read so), in one call from
    the event's validation (this runs for every event); any other by pydantic."""
    own_form = (type(value) is str and len(value) == 24 and value[19] == "."
                and value[23] == "Z")
    if own_form:
        second = _SECONDS.get(value[:19])
        millis = value[20:23]
        if second is not None and millis.isdigit() and millis.isascii():
            return second + int(millis)
    if type(value) is str and _USUAL_TS.match(value):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:  # a day or hour out of range
            raise ValueError("ts is not RFC 3339") from None
        if own_form:
            if len(_SECONDS) >= _SECONDS_KEPT:
                _SECONDS.clear()
            _SECONDS[value[:19]] = round(moment.replace(microsecond=0).timestamp() * 1000)
        return round(moment.timestamp() * 1000)
    return _ANY_TS.validate_python(value)


def normalise_caller(value: Any) -> str | None:
    """Drop ``+``, spaces, ``-``, ``.``, ``(`` and ``)``; what is left must be 1-20 ASCII
    digits, otherwise the call has no caller (withheld, a name, another script's digits).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("caller is not a string")
    digits = value.translate(_CALLER_PUNCTUATION)
    return digits if _CALLER_DIGITS.fullmatch(digits) else None


def mask_caller(number: str) -> str:
    """A caller number as people may see it without a token: its last 4 digits."""
    return "*" * max(0, len(number) - 4) + number[-4:]


if TYPE_CHECKING:
    Ts = int
else:
    Ts = Annotated[Any, PlainValidator(_ts_ms)]
QueueId = Annotated[str, Field(pattern=ID_PATTERN)]
AgentId = Annotated[str, Field(pattern=ID_PATTERN)]
#: 1-128 printable characters: no control characters (checked by pydantic's own regex).
CallId = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f-\x9f]{1,128}$")]
Caller = Annotated[str | None, BeforeValidator(normalise_caller)]


#: Events are slotted pydantic dataclasses: a batch holds thousands, and a model instance
#: (a dict and a set beside the object) takes half as long again to make and to free.
_EVENT = event_class(frozen=True, slots=True, kw_only=True,
                     config=ConfigDict(extra="ignore", strict=True))


@_EVENT
class _Event:
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    ts: Ts
    schema_: Annotated[StrictInt, Field(alias="schema")] = SCHEMA_VERSION


@_EVENT
class CallQueued(_Event):
    type: Literal["call.queued"]
    call_id: CallId
    queue_id: QueueId
    caller: Caller = None
    priority: Annotated[StrictInt, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)] | None = None


@_EVENT
class CallAnswered(_Event):
    type: Literal["call.answered"]
    call_id: CallId
    queue_id: QueueId
    agent_id: AgentId


@_EVENT
class CallAbandoned(_Event):
    type: Literal["call.abandoned"]
    call_id: CallId
    queue_id: QueueId


@_EVENT
class CallbackAccepted(_Event):
    type: Literal["call.callback_accepted"]
    call_id: CallId
    queue_id: QueueId


@_EVENT
class CallbackAttempt(_Event):
    type: Literal["call.callback_attempt"]
    call_id: CallId
    queue_id: QueueId
    offer_id: Annotated[str, Field(min_length=1, max_length=128)]
    result: AttemptResult


@_EVENT
class CallTransferred(_Event):
    type: Literal["call.transferred"]
    call_id: CallId
    queue_id: QueueId
    to_queue_id: QueueId
    agent_id: AgentId | None = None


@_EVENT
class CallEnded(_Event):
    type: Literal["call.ended"]
    call_id: CallId
    queue_id: QueueId
    agent_id: AgentId | None = None


@_EVENT
class AgentStateChanged(_Event):
    type: Literal["agent.state"]
    agent_id: AgentId
    state: AgentState
    queues: list[QueueId]


CallEvent = (
    CallQueued
    | CallAnswered
    | CallAbandoned
    | CallbackAccepted
    | CallbackAttempt
    | CallTransferred
    | CallEnded
)
Event = CallEvent | AgentStateChanged
#: The contract's event types, as the event classes spell them.
EVENT_TYPES: tuple[str, ...] = tuple(
    get_args(cls.__pydantic_fields__["type"].annotation)[0] for cls in get_args(Event))
_ADAPTER: TypeAdapter[Event] = TypeAdapter(
    Annotated[Event, Field(discriminator="type")]
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message cannot be applied; ``event_type`` is ``unknown`` without a valid type."""

    reason: str
    detail: str
    event_type: str = "unknown"


def parse(value: bytes | None, wall_now_ms: int) -> Event | Rejection:
    """Validate one Kafka message value against the contract."""
    if value is None:
        return Rejection("invalid_json", "empty message value")
    try:
        event = _ADAPTER.validate_json(value)
    except ValidationError as exc:
        return _rejection(exc, value)
    if event.schema_ != SCHEMA_VERSION:
        return Rejection(
            "unsupported_schema", f"schema {event.schema_} is not {SCHEMA_VERSION}", event.type
        )
    if event.ts > wall_now_ms + MAX_FUTURE_MS:
        return Rejection("future_ts", "ts is more than 5 minutes ahead of the clock", event.type)
    return event


def _rejection(exc: ValidationError, value: bytes) -> Rejection:
    error = exc.errors(include_url=False)[0]
    kind = error["type"]
    loc = [str(part) for part in error["loc"]]
    if kind == "json_invalid" or kind == "json_type":
        return Rejection("invalid_json", "value is not valid JSON")
    if kind in ("model_attributes_type", "model_type", "dict_type") and len(loc) <= 1:
        return Rejection("not_an_object", "value is not a JSON object")
    if kind == "union_tag_not_found":
        return Rejection("missing_field:type", "no type field")
    if kind == "union_tag_invalid":
        return Rejection("unknown_type", "type is not one of " + ", ".join(EVENT_TYPES))
    event_type = loc[0] if loc and loc[0] in EVENT_TYPES else "unknown"
    field = loc[1] if len(loc) > 1 else "?"
    if field == "schema":
        field = "schema"
    if kind == "missing":
        return Rejection(f"missing_field:{field}", f"{field} is required", event_type)
    if field in ("queue_id", "agent_id", "to_queue_id", "call_id", "event_id", "offer_id") or (
        field == "queues" and kind == "string_pattern_mismatch"
    ):
        return Rejection(f"bad_id:{field}", f"{field}: {error['msg']}", event_type)
    if field == "ts":
        return Rejection("bad_ts", "ts is not RFC 3339 with an offset or epoch seconds", event_type)
    return Rejection(f"bad_value:{field}", f"{field}: {error['msg']}", event_type)
