"""Settings from the environment, durations, callback hours and the per-queue policy file."""

from __future__ import annotations

import os
from datetime import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from stream.config import (
    CallbackHours,
    Policy,
    QueuePolicy,
    Settings,
    format_duration,
    is_valid_id,
    load_policy,
    parse_duration,
    window_seconds,
)
from stream.errors import ConfigError

#: Contract §7, the policy file's [defaults] table.
CONTRACT_POLICY_DEFAULTS: dict[str, object] = {
    "sla_seconds": 20,
    "short_abandon_seconds": 5,
    "service_level_target": 0.8,
    "callback_wait_seconds": 120,
    "callback_ewt_seconds": 300,
    "callback_max_per_caller": 2,
    "callback_max_pending": 50,
    "callback_max_attempts": 3,
    "callback_retry_minutes": 15,
    "callback_hours": "08:00-20:00",
    "timezone": "UTC",
    "alert_window": "5m",
    "alert_abandon_ratio": 0.2,
    "alert_min_calls": 10,
    "alert_baseline_factor": 3.0,
    "alert_resolve_ratio": 0.1,
    "lost_caller_value": 0,
}


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1s", 1),
        ("5m", 300),
        ("15m", 900),
        ("90m", 5400),
        ("1h", 3600),
        ("24h", 86400),
        ("1d", 86400),
        (" 15m ", 900),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "5", "m", "0s", "0m", "5M", "5 m", "1.5h", "-5m", "5w", "1h30m", "5min", "fivem"]
)
def test_bad_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration like 30s, 5m, 1h or 1d"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "label"),
    [
        (30, "30s"),
        (90, "90s"),
        (300, "5m"),
        (900, "15m"),
        (5400, "90m"),
        (3600, "1h"),
        (7200, "2h"),
        (86400, "1d"),
        (172800, "2d"),
        (90000, "25h"),
    ],
)
def test_format_duration(seconds: int, label: str) -> None:
    assert format_duration(seconds) == label
    assert parse_duration(label) == seconds


@pytest.mark.parametrize(
    ("spec", "seconds"),
    [
        ("5m,15m,1h", [300, 900, 3600]),
        ("1h, 5m", [300, 3600]),
        ("5m,300s,5m", [300]),
        ("5m,", [300]),
        ("1m,1h,1d", [60, 3600, 86400]),
    ],
)
def test_window_seconds(spec: str, seconds: list[int]) -> None:
    assert window_seconds(spec) == seconds


@pytest.mark.parametrize("spec", ["", ",", " , ", "5m,x", "5m;15m", "0m"])
def test_bad_window_spec_names_the_setting(spec: str) -> None:
    with pytest.raises(ValueError, match="CALLSTREAM_WINDOWS"):
        window_seconds(spec)


# --- callback hours ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (time(0, 0), False),
        (time(7, 59, 59), False),
        (time(8, 0), True),
        (time(12, 30), True),
        (time(19, 59, 59), True),
        (time(20, 0), False),
        (time(23, 59), False),
    ],
)
def test_daytime_hours_end_exclusive(moment: time, inside: bool) -> None:
    assert CallbackHours.parse("08:00-20:00").contains(moment) is inside


@pytest.mark.parametrize("moment", [time(0, 0), time(6, 0), time(12, 0), time(23, 59, 59)])
def test_all_day_hours(moment: time) -> None:
    assert CallbackHours.parse("00:00-24:00").contains(moment)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (time(21, 59), False),
        (time(22, 0), True),
        (time(23, 30), True),
        (time(0, 0), True),
        (time(5, 59, 59), True),
        (time(6, 0), False),
        (time(12, 0), False),
    ],
)
def test_hours_over_midnight(moment: time, inside: bool) -> None:
    assert CallbackHours.parse("22:00-06:00").contains(moment) is inside


def test_hours_with_minutes() -> None:
    hours = CallbackHours.parse("08:30-17:45")
    assert (hours.start_minute, hours.end_minute) == (510, 1065)
    assert not hours.contains(time(8, 29))
    assert hours.contains(time(8, 30))
    assert hours.contains(time(17, 44))
    assert not hours.contains(time(17, 45))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "8:00-20:00",
        "08:00",
        "08:00-20:00-21:00",
        "08:00 - 20:00",
        "0800-2000",
        "ab:cd-ef:gh",
        "24:00-06:00",
        "25:00-02:00",
        "08:60-20:00",
        "08:00-20:60",
        "08:00-24:30",
        "08:00-25:00",
    ],
)
def test_bad_callback_hours(text: str) -> None:
    with pytest.raises(ValueError, match=r"08:00-20:00|00:00-24:00"):
        CallbackHours.parse(text)


# --- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("sales", True),
        ("x" * 64, True),
        ("Q_1.eu:main-2", True),
        ("x" * 65, False),
        ("", False),
        ("a/b", False),
        ("a b", False),
        ("é", False),
    ],
)
def test_is_valid_id(value: str, valid: bool) -> None:
    assert is_valid_id(value) is valid


def test_id_with_trailing_newline_is_invalid() -> None:
    assert not is_valid_id("sales\n")


# --- settings ---------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CALLSTREAM_* variable and no .env file: the defaults alone."""
    for name in list(os.environ):
        if name.startswith("CALLSTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_settings_defaults_are_the_contracts(clean_env: Path) -> None:
    settings = Settings()
    assert settings.kafka_bootstrap == "localhost:9092"
    assert settings.kafka_group == "callstream"
    assert settings.kafka_start == "window"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.mqtt_url == ""
    assert settings.http_port == 8000
    assert settings.windows == "5m,15m,1h"
    assert settings.window_seconds == [300, 900, 3600]
    assert settings.clock == "wall"
    assert settings.policy_file == ""
    assert settings.topic_events == "call-events"
    assert settings.topic_dlq == "call-events-dlq"
    assert settings.topic_offers == "callback-offers"
    assert settings.topic_cancels == "callback-cancels"
    assert settings.topic_alerts == "alerts"


def test_settings_from_environment(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSTREAM_WINDOWS", "1h,1m")
    monkeypatch.setenv("CALLSTREAM_CLOCK", "event")
    monkeypatch.setenv("CALLSTREAM_KAFKA_START", "latest")
    monkeypatch.setenv("CALLSTREAM_KAFKA_BOOTSTRAP", "kafka-1:9093,kafka-2:9093")
    monkeypatch.setenv("CALLSTREAM_HTTP_PORT", "9100")
    monkeypatch.setenv("CALLSTREAM_TOPIC_EVENTS", "pbx-events")
    monkeypatch.setenv("CALLSTREAM_POLICY_FILE", "/etc/callstream/policy.toml")
    settings = Settings()
    assert settings.window_seconds == [60, 3600]
    assert settings.clock == "event"
    assert settings.kafka_start == "latest"
    assert settings.kafka_bootstrap == "kafka-1:9093,kafka-2:9093"
    assert settings.http_port == 9100
    assert settings.topic_events == "pbx-events"
    assert settings.policy_file == "/etc/callstream/policy.toml"


def test_settings_from_dotenv_file_below_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text(
        "CALLSTREAM_KAFKA_GROUP=from-dotenv\nCALLSTREAM_CLOCK=event\n", encoding="utf-8"
    )
    monkeypatch.setenv("CALLSTREAM_CLOCK", "wall")
    settings = Settings()
    assert settings.kafka_group == "from-dotenv"
    assert settings.clock == "wall"


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("CALLSTREAM_KAFKA_START", "middle", "kafka_start"),
        ("CALLSTREAM_CLOCK", "server", "clock"),
        ("CALLSTREAM_WINDOWS", "5m,soon", "windows"),
        ("CALLSTREAM_WINDOWS", "", "windows"),
        ("CALLSTREAM_HTTP_PORT", "70000", "http_port"),
        ("CALLSTREAM_HTTP_PORT", "http", "http_port"),
        ("CALLSTREAM_REDIS_URL", "localhost:6379", "redis_url"),
        ("CALLSTREAM_REDIS_URL", "http://localhost:6379", "redis_url"),
        ("CALLSTREAM_MQTT_PREFIX", "site/+/callstream", "mqtt_prefix"),
        ("CALLSTREAM_MQTT_PREFIX", "/callstream", "mqtt_prefix"),
        ("CALLSTREAM_INSTANCE", "a/b", "instance"),
        ("CALLSTREAM_MQTT_CAFILE", "/nowhere/ca.pem", "mqtt_cafile"),
        ("CALLSTREAM_KAFKA_SSL_CERTFILE", "/nowhere/client.pem", "kafka_ssl_certfile"),
    ],
)
def test_bad_setting_is_a_validation_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [error["loc"][0] for error in info.value.errors()] == [field]


# --- policy defaults --------------------------------------------------------------------------


def test_policy_defaults_are_the_contracts() -> None:
    assert QueuePolicy().model_dump() == CONTRACT_POLICY_DEFAULTS
    assert set(QueuePolicy.model_fields) == set(CONTRACT_POLICY_DEFAULTS)


def test_no_policy_file_means_defaults_for_every_queue() -> None:
    policy = load_policy("")
    assert policy == Policy()
    assert policy.for_queue("sales") == QueuePolicy()


def test_contract_example_policy_file(tmp_path: Path) -> None:
    lines = [f"{key} = {value!r}" for key, value in CONTRACT_POLICY_DEFAULTS.items()]
    text = "[defaults]\n" + "\n".join(lines).replace("'", '"') + "\n\n[queues.sales]\n"
    path = tmp_path / "policy.toml"
    path.write_text(text + "sla_seconds = 30\n", encoding="utf-8")
    policy = load_policy(str(path))
    assert policy.defaults == QueuePolicy()
    assert policy.for_queue("sales") == QueuePolicy(sla_seconds=30)


# --- policy file ------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_queue_overrides_inherit_file_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[defaults]
sla_seconds = 15
timezone = "Europe/Paris"
callback_hours = "09:00-18:00"

[queues.sales]
sla_seconds = 30

[queues."support.eu:1"]
callback_hours = "22:00-06:00"
service_level_target = 0.9
""",
    )
    policy = load_policy(path)
    assert policy.defaults.sla_seconds == 15
    assert policy.defaults.short_abandon_seconds == 5  # contract default, not in the file
    sales = policy.for_queue("sales")
    assert (sales.sla_seconds, sales.timezone, sales.callback_hours) == (
        30,
        "Europe/Paris",
        "09:00-18:00",
    )
    support = policy.for_queue("support.eu:1")
    assert (support.sla_seconds, support.callback_hours, support.service_level_target) == (
        15,
        "22:00-06:00",
        0.9,
    )
    assert support.timezone == "Europe/Paris"
    assert policy.for_queue("billing") == policy.defaults


def test_queues_without_defaults_table(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "[queues.sales]\nalert_min_calls = 20\n"))
    assert policy.defaults == QueuePolicy()
    assert policy.for_queue("sales") == QueuePolicy(alert_min_calls=20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[defaults]\nslaa_seconds = 20\n",
            ["defaults.slaa_seconds", "unknown key", "allowed: sla_seconds"],
        ),
        (
            "[queues.sales]\ncolour = 'red'\n",
            ["queues.sales.colour", "unknown key", "callback_hours"],
        ),
        ("[defaults]\nsla_seconds = -1\n", ["defaults.sla_seconds", "greater than or equal to 0"]),
        ("[queues.sales]\nsla_seconds = 'fast'\n", ["queues.sales.sla_seconds", "number"]),
        (
            '[defaults]\ntimezone = "Mars/Base"\n',
            ["defaults.timezone", "Mars/Base", "IANA time zone"],
        ),
        ('[defaults]\ncallback_hours = "8-20"\n', ["defaults.callback_hours", "08:00-20:00"]),
        (
            '[defaults]\ncallback_hours = "08:00-25:00"\n',
            ["defaults.callback_hours", "00:00-24:00"],
        ),
        ('[defaults]\nalert_window = "5 minutes"\n', ["defaults.alert_window", "30s, 5m"]),
        (
            "[defaults]\nservice_level_target = 1.5\n",
            ["defaults.service_level_target", "less than 1"],
        ),
        (
            "[defaults]\ncallback_max_attempts = 0\n",
            ["defaults.callback_max_attempts", "greater than or equal to 1"],
        ),
        ("[defaults]\ncallback_max_pending = 2.5\n", ["defaults.callback_max_pending", "integer"]),
        (
            "[defaults]\nalert_abandon_ratio = 0\n",
            ["defaults.alert_abandon_ratio", "greater than 0"],
        ),
        (
            "[defaults]\nlost_caller_value = -10\n",
            ["defaults.lost_caller_value", "greater than or equal to 0"],
        ),
        ('[queues."a/b"]\nsla_seconds = 30\n', ["[queues.a/b]", "[A-Za-z0-9_.:-]"]),
        (f"[queues.{'q' * 65}]\nsla_seconds = 30\n", ["q" * 65, "1-64 chars"]),
        ("[queue.sales]\nsla_seconds = 30\n", ["'queue'", "[defaults], [queues.<id>]"]),
        ("sla_seconds = 30\n", ["'sla_seconds'", "[defaults], [queues.<id>]"]),
        ("defaults = 5\n", ["[defaults] must be a table"]),
        ("[defaults\nsla_seconds = 30\n", ["not valid TOML", "line 1"]),
        ("[defaults]\nsla_seconds = \n", ["not valid TOML"]),
    ],
)
def test_bad_policy_file_names_file_key_and_rule(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(path)
    for part in expected:
        assert part in message


def test_bad_queue_override_names_the_queue(tmp_path: Path) -> None:
    path = write(tmp_path, "[queues.sales]\nsla_seconds = 30\n[queues.support]\nsla_seconds = -5\n")
    with pytest.raises(ConfigError, match=r"queues\.support\.sla_seconds"):
        load_policy(path)


def test_missing_policy_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nowhere.toml")
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert path in str(info.value)
    assert "does not exist" in str(info.value)
    assert "CALLSTREAM_POLICY_FILE" in str(info.value)


@pytest.mark.parametrize("text", ["queues = 5\n", "[queues]\nsales = 5\n"])
def test_queues_that_are_not_tables(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="must be a table"):
        load_policy(path)


def test_queue_id_with_trailing_newline_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[queues."sales\\n"]\nsla_seconds = 30\n')
    with pytest.raises(ConfigError, match="queue id"):
        load_policy(path)


def test_policy_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b'[defaults]\ntimezone = "Europe/Z\xfcrich"\n')
    with pytest.raises(ConfigError, match=str(path)):
        load_policy(str(path))


def test_boolean_for_a_number_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[defaults]\nsla_seconds = true\n")
    with pytest.raises(ConfigError, match="sla_seconds"):
        load_policy(path)


def test_redis_url_without_a_scheme_says_what_to_write(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLSTREAM_REDIS_URL", "localhost:6379")
    with pytest.raises(ValidationError) as info:
        Settings()
    message = info.value.errors()[0]["msg"]
    assert "redis://" in message and "try redis://localhost:6379" in message


def test_redis_url_with_a_password_is_never_echoed(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLSTREAM_REDIS_URL", "user:s3cret@localhost:6379")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "s3cret" not in info.value.errors()[0]["msg"]


def test_secrets_never_show(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSTREAM_HTTP_TOKEN", "tok-s3cret")
    monkeypatch.setenv("CALLSTREAM_KAFKA_SASL_PASSWORD", "sasl-s3cret")
    monkeypatch.setenv("CALLSTREAM_KAFKA_SSL_KEY_PASSWORD", "key-s3cret")
    settings = Settings()
    assert settings.http_token.get_secret_value() == "tok-s3cret"
    assert settings.kafka_sasl_password.get_secret_value() == "sasl-s3cret"
    assert settings.kafka_ssl_key_password.get_secret_value() == "key-s3cret"
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    assert "s3cret" not in shown


def test_new_settings_defaults(clean_env: Path) -> None:
    settings = Settings()
    assert settings.mqtt_prefix == "callstream"
    assert settings.mqtt_cafile == ""
    assert settings.kafka_ssl_certfile == settings.kafka_ssl_keyfile == ""
    assert settings.instance.endswith(f"-{os.getpid()}")


def test_tls_files_that_exist_are_taken(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = clean_env / "ca.pem"
    ca.write_text("x", encoding="utf-8")
    monkeypatch.setenv("CALLSTREAM_MQTT_CAFILE", str(ca))
    monkeypatch.setenv("CALLSTREAM_MQTT_PREFIX", "site-1/callstream")
    monkeypatch.setenv("CALLSTREAM_INSTANCE", "pod-7")
    settings = Settings()
    assert settings.mqtt_cafile == str(ca)
    assert settings.mqtt_prefix == "site-1/callstream"
    assert settings.instance == "pod-7"


def test_a_policy_file_with_several_mistakes_reports_them_all(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[defaults]\nslaa_seconds = 20\nsla_seconds = -1\n"
        '[queues.sales]\ntimezone = "Mars/Base"\n'
        '[queues."a/b"]\nsla_seconds = 30\n'
        "[queue.typo]\nx = 1\n",
    )
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 5 problems: ")
    for part in ("defaults.slaa_seconds: unknown key", "defaults.sla_seconds",
                 "queues.sales.timezone", "Mars/Base", "[queues.a/b]", "'queue'",
                 "allowed: sla_seconds"):
        assert part in message
    assert "\n" not in message
    assert message.count("allowed: sla_seconds") == 1
