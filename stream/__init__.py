"""callstream: a real-time telephony event processor (Kafka -> Redis -> metrics, offers, alerts)."""

from stream.config import Policy, QueuePolicy, Settings
from stream.errors import CallstreamError, ConfigError, ServiceUnavailable

__version__ = "0.1.0"

__all__ = [
    "CallstreamError",
    "ConfigError",
    "Policy",
    "QueuePolicy",
    "ServiceUnavailable",
    "Settings",
    "__version__",
]
