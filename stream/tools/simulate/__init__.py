"""``callstream simulate``: a synthetic call centre that produces contract events.

Poisson arrivals shaped by a time-of-day profile, skilled agents with shifts, breaks and
wrap-up, impatient callers (Erlang A), transfers, overflows, callbacks, repeat callers and
staffing incidents. ``model`` holds the configuration, ``engine`` the seeded simulation
(``generate``, the pure core), ``sinks`` the pacing into Kafka or a JSON-lines file
(``produce``), ``command`` the command line. The same seed and start give the same events.
"""

from stream.tools.simulate.command import SimulateCommand, command_from_args, register
from stream.tools.simulate.engine import generate, generate_with_record, timeline
from stream.tools.simulate.model import (
    AgentConfig,
    AgentDay,
    Incident,
    QueueConfig,
    SimulationConfig,
)
from stream.tools.simulate.sinks import produce

__all__ = [
    "AgentConfig",
    "AgentDay",
    "Incident",
    "QueueConfig",
    "SimulateCommand",
    "SimulationConfig",
    "command_from_args",
    "generate",
    "generate_with_record",
    "produce",
    "register",
    "timeline",
]
