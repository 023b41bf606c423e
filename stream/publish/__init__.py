"""Publish: what people and their tools see.

Owns the snapshot and when it is shown as not ready (``hub``), its refresh from the state
(``snapshots``), the Prometheus metrics (``metrics``), MQTT (``mqtt``), the HTTP API and
the wallboard (``web``), and the index of where calls wait (``waiting_calls``).
"""

from __future__ import annotations

from stream.publish.hub import SnapshotHub
from stream.publish.metrics import build_registry
from stream.publish.mqtt import MqttPublisher
from stream.publish.snapshots import SnapshotRefresher
from stream.publish.waiting_calls import WaitingCalls
from stream.publish.web.app import build_app

__all__ = [
    "MqttPublisher",
    "SnapshotHub",
    "SnapshotRefresher",
    "WaitingCalls",
    "build_app",
    "build_registry",
]
