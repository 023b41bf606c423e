"""Settings (``CALLSTREAM_*`` environment, ``.env``) and the per-queue policy file.

Both are validated once, at start-up, and trusted afterwards. Every default of the
contract is written here and nowhere else.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from datetime import time
from functools import cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.errors import ConfigError
from stream.urls import check_redis_url

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_ID_RE = re.compile(ID_PATTERN)
_DURATION_RE = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: Erlang C uses the offered rate and AHT of this window, whether configured or not.
STAFFING_WINDOW_SECONDS = 900
#: The wallboard's trends (sparklines) cover this window, bucket by bucket.
TREND_WINDOW_SECONDS = 3600


def parse_duration(text: str) -> int:
    """``"5m"`` -> 300. Durations are whole seconds, minutes, hours or days."""
    match = _DURATION_RE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h or 1d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    """300 -> ``"5m"``: the label a window carries in metrics and the API."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def is_valid_id(value: str) -> bool:
    """Queue and agent ids become metric labels and key parts: keep them tame."""
    return bool(_ID_RE.fullmatch(value))


_TOPIC_ROOT_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}(/[A-Za-z0-9_.:-]{1,64}){0,7}$"


def _default_instance() -> str:
    """``host-pid``: unique among the processes of a deployment, readable in a status list."""
    host = re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname())[:48] or "host"
    return f"{host}-{os.getpid()}"


class Settings(BaseSettings):
    """Process settings, from ``CALLSTREAM_*`` variables or a ``.env`` file."""

    model_config = SettingsConfigDict(
        env_prefix="CALLSTREAM_", env_file=".env", extra="ignore", frozen=True
    )

    kafka_bootstrap: str = "localhost:9092"
    kafka_group: str = "callstream"
    kafka_start: Literal["window", "earliest", "latest"] = "window"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""
    #: A client certificate (PEM) and its key, for brokers that authenticate clients by TLS.
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_key_password: SecretStr = SecretStr("")
    #: Off by default: tansu's memory engine refuses the idempotent producer.
    kafka_idempotence: bool = False
    kafka_batch_max: int = Field(default=10_000, ge=1)

    redis_url: str = "redis://localhost:6379/0"
    redis_prefix: str = Field(default="cs", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    mqtt_url: str = ""
    #: Root of every MQTT topic: ``{root}/wallboard/{queue_id}``, ``{root}/status/{instance}``.
    mqtt_prefix: str = Field(default="callstream", pattern=_TOPIC_ROOT_PATTERN)
    #: CA bundle (PEM) that signs the broker's certificate, for ``mqtts://``.
    mqtt_cafile: str = ""
    #: This process's name in ``{root}/status/{instance}`` and its MQTT client id.
    instance: str = Field(default_factory=_default_instance, pattern=ID_PATTERN)

    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8000, ge=0, le=65535)
    http_token: SecretStr = SecretStr("")

    windows: str = "5m,15m,1h"
    clock: Literal["wall", "event"] = "wall"
    policy_file: str = ""

    topic_events: str = "call-events"
    topic_dlq: str = "call-events-dlq"
    topic_offers: str = "callback-offers"
    topic_cancels: str = "callback-cancels"
    topic_alerts: str = "alerts"

    #: Bounds on what a producer can make callstream track (contract §1 "Bounded").
    max_queues: int = Field(default=2000, ge=1)
    max_agents: int = Field(default=5000, ge=1)

    log_level: str = "INFO"

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        try:
            return check_redis_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
                     "mqtt_cafile")
    @classmethod
    def _check_file(cls, value: str) -> str:
        if value and not Path(value).is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, value: str) -> str:
        window_seconds(value)
        return value

    @property
    def event_clock(self) -> bool:
        """``clock=event``: now is the newest applied event time (replays of history)."""
        return self.clock == "event"

    @property
    def window_seconds(self) -> list[int]:
        """Configured windows, shortest first."""
        return window_seconds(self.windows)


def window_seconds(spec: str) -> list[int]:
    """``"5m,15m,1h"`` -> ``[300, 900, 3600]``."""
    parts = [p for p in (s.strip() for s in spec.split(",")) if p]
    if not parts:
        raise ValueError("CALLSTREAM_WINDOWS needs at least one window, like 5m,15m,1h")
    try:
        return sorted({parse_duration(p) for p in parts})
    except ValueError as exc:
        raise ValueError(f"CALLSTREAM_WINDOWS: {exc}") from None


class CallbackHours(BaseModel):
    """``"08:00-20:00"``: end exclusive; ``"00:00-24:00"`` all day; may span midnight."""

    start_minute: int
    end_minute: int

    @classmethod
    @cache  # asked for every callback candidate
    def parse(cls, text: str) -> CallbackHours:
        match = re.match(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$", text)
        if not match:
            raise ValueError(f"{text!r} is not a range like 08:00-20:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise ValueError(f"{text!r} has a time outside 00:00-24:00")
        if h1 * 60 + m1 == h2 * 60 + m2:
            raise ValueError(f"{text!r} is never open (say 00:00-24:00 for all day)")
        return cls(start_minute=h1 * 60 + m1, end_minute=h2 * 60 + m2)

    def contains(self, moment: time) -> bool:
        minute = moment.hour * 60 + moment.minute
        if self.start_minute <= self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute


class QueuePolicy(BaseModel):
    """Per-queue thresholds; ``[defaults]`` of the policy file, then ``[queues.X]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sla_seconds: float = Field(default=20, ge=0)
    short_abandon_seconds: float = Field(default=5, ge=0)
    service_level_target: float = Field(default=0.8, gt=0, lt=1)
    callback_wait_seconds: float = Field(default=120, gt=0)
    callback_ewt_seconds: float = Field(default=300, gt=0)
    callback_max_per_caller: int = Field(default=2, ge=0)
    callback_max_pending: int = Field(default=50, ge=0)
    callback_max_attempts: int = Field(default=3, ge=1)
    callback_retry_minutes: float = Field(default=15, gt=0)
    callback_hours: str = "08:00-20:00"
    timezone: str = "UTC"
    alert_window: str = "5m"
    alert_abandon_ratio: float = Field(default=0.2, gt=0, le=1)
    alert_min_calls: int = Field(default=10, ge=1)
    alert_baseline_factor: float = Field(default=3.0, gt=0)
    alert_resolve_ratio: float = Field(default=0.1, ge=0, le=1)
    lost_caller_value: float = Field(default=0, ge=0)

    @field_validator("callback_hours")
    @classmethod
    def _check_hours(cls, value: str) -> str:
        CallbackHours.parse(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone like Europe/Paris") from None
        return value

    @field_validator("alert_window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        parse_duration(value)
        return value


class Policy(BaseModel):
    """The policy of every queue: defaults plus per-queue overrides."""

    model_config = ConfigDict(frozen=True)

    defaults: QueuePolicy = QueuePolicy()
    queues: dict[str, QueuePolicy] = {}

    def for_queue(self, queue_id: str) -> QueuePolicy:
        return self.queues.get(queue_id, self.defaults)


def load_policy(path: str) -> Policy:
    """Read the TOML policy file; refuse it whole, naming file, key and rule, if wrong.

    Every mistake of the file is reported in the one message, not only the first.
    """
    if not path:
        return Policy()
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"CALLSTREAM_POLICY_FILE: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"CALLSTREAM_POLICY_FILE: {path} cannot be read as UTF-8 text: "
                          f"{exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    problems: list[str] = []
    unknown = set(raw) - {"defaults", "queues"}
    if unknown:
        problems.append(
            f"unknown table(s) {sorted(unknown)}; allowed: [defaults], [queues.<id>]")
    defaults_raw = raw.get("defaults", {})
    defaults = _queue_policy("defaults", defaults_raw, problems)
    if not isinstance(defaults_raw, dict):
        defaults_raw = {}
    tables = raw.get("queues", {})
    if not isinstance(tables, dict):
        problems.append("queues must be a table of tables like [queues.sales]")
        tables = {}
    queues: dict[str, QueuePolicy] = {}
    for queue_id, overrides in tables.items():
        if not is_valid_id(queue_id):
            problems.append(f"[queues.{queue_id}]: a queue id is 1-64 chars of [A-Za-z0-9_.:-]")
        if not isinstance(overrides, dict):
            problems.append(f"queues.{queue_id} must be a table [queues.{queue_id}]")
            continue
        # Keys wrong in [defaults] are reported once, there, not again for every queue.
        inherited = defaults_raw if defaults is not None else {}
        policy = _queue_policy(f"queues.{queue_id}", inherited | overrides, problems)
        if policy is not None:
            queues[queue_id] = policy
    if problems:
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        if any(p.endswith(_UNKNOWN_KEY) for p in problems):
            problems.append("allowed: " + ", ".join(QueuePolicy.model_fields))
        raise ConfigError(f"{path}: {count}: " + "; ".join(problems))
    assert defaults is not None
    return Policy(defaults=defaults, queues=queues)


def _queue_policy(table: str, values: object, problems: list[str]) -> QueuePolicy | None:
    """The table's policy, or None with its every mistake added to ``problems``."""
    if not isinstance(values, dict):
        problems.append(f"[{table}] must be a table of settings")
        return None
    try:
        return QueuePolicy(**values)
    except ValidationError as exc:
        problems.extend(
            f"{table}.{'.'.join(str(p) for p in err['loc'])}: {_describe(err)}"
            for err in exc.errors()
        )
        return None


_UNKNOWN_KEY = "unknown key"


def _describe(err: object) -> str:
    assert isinstance(err, dict)
    if err["type"] == "extra_forbidden":
        return _UNKNOWN_KEY
    return str(err["msg"])
