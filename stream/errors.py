"""The exceptions callstream raises. Bad events are data, not exceptions: they go to the DLQ."""


class CallstreamError(Exception):
    """Base of every error callstream raises on purpose."""


class ConfigError(CallstreamError):
    """A setting or the policy file is wrong; the message names what to fix."""


class ServiceUnavailable(CallstreamError):
    """Kafka or Redis cannot be reached; the message names the setting that points at it."""
