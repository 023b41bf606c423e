"""What the integration tests share: run real processors against tansu and Redis, produce
events, read figures back.

The names below are the harness every part's tests use (``from harness import ...``).
Helpers of one area live in a module of their own, imported from it:

- ``harness.settings``: where the shared services are (Redis URL, Mosquitto, chromium)
- ``harness.centre``: events applied through the real Lua without Kafka, figures read back
- ``harness.agents``: the simulated centre and its record of every agent's figures
- ``harness.journeys``: callers' journey streams and the model of their figures
- ``harness.alerts``: scripted abandonment histories and the alerts' store
- ``harness.offers``: callback reservations taken many script calls at a time
- ``harness.mqtt``: subscribing to the shared Mosquitto
- ``harness.deploy_files``: the files of deploy/ as the deploy tests read them

Pytest fixtures are in the ``conftest.py`` of the tests that use them, not here.
"""

from harness.events import _event, call_stream
from harness.probes import (
    http_json,
    http_ok,
    http_status,
    http_text,
    metric_value,
    queue_figures,
    totals_match,
    wait_until,
)
from harness.processor import (
    InProcessProcessor,
    ProcessorProcess,
    produce,
    read_topic,
    settings_env,
    unique_settings,
)
from harness.redis_servers import crash_and_cut_aof, start_redis
from harness.settings import CHROMIUM, MQTT_HOST, MQTT_PORT, MQTT_URL, NO_CHROMIUM, REDIS_URL

__all__ = [
    "CHROMIUM",
    "MQTT_HOST",
    "MQTT_PORT",
    "MQTT_URL",
    "NO_CHROMIUM",
    "REDIS_URL",
    "InProcessProcessor",
    "ProcessorProcess",
    "_event",
    "call_stream",
    "crash_and_cut_aof",
    "http_json",
    "http_ok",
    "http_status",
    "http_text",
    "metric_value",
    "produce",
    "queue_figures",
    "read_topic",
    "settings_env",
    "start_redis",
    "totals_match",
    "unique_settings",
    "wait_until",
]
