"""Tools around the processor: ``simulate`` (a synthetic call centre), ``replay`` and
``follow`` (files and a live Asterisk ``queue_log`` into Kafka, mapped by ``queue_log``),
``dialler`` (an example telephony side for callback offers) and ``broker`` (the embedded
Kafka and Redis of the demo and the tests). Each is its own module, loaded when used.
"""

__all__ = ["broker", "dialler", "follow", "queue_log", "replay", "simulate"]
