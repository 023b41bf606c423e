"""Where the integration tests find the shared services: defined here, and only here.

``CALLSTREAM_TEST_REDIS_URL`` names the Redis database the tests flush and fill (db 15 of
the local Redis unless set); give each concurrent run a database of its own.
"""

from __future__ import annotations

import os
import shutil

#: The shared Redis the tests use (each test under keys of its own).
REDIS_URL = os.environ.get("CALLSTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

#: The shared Mosquitto the MQTT tests publish to and subscribe on.
MQTT_HOST = "127.0.0.1"
MQTT_PORT = 1883
MQTT_URL = f"mqtt://{MQTT_HOST}:{MQTT_PORT}"

#: Debian's chromium, for the browser tests (None: those tests skip).
CHROMIUM = shutil.which("chromium")
NO_CHROMIUM = "Debian's chromium is not installed (apt-get install chromium)"
