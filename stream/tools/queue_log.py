"""Asterisk ``queue_log`` lines to contract events (pure: no I/O).

The mapping and what it loses are written down in ``docs/queue_log.md``. Lines are
mapped in file order by one :class:`QueueLogMapper`, because agent events need memory:
queue_log names the queue of one membership change at a time, while the contract's
``agent.state`` lists all of an agent's queues.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from stream.timefmt import rfc3339_of

Event = dict[str, Any]

#: Known events with no contract twin: counted in the summary, never reported as errors.
INFORMATIONAL = frozenset(
    {
        "RINGNOANSWER",
        "RINGCANCELED",
        "AGENTDUMP",
        "DID",
        "INFO",
        "QUEUESTART",
        "CONFIGRELOAD",
        "SYSCOMPAT",
        "PENALTY",
    }
)

_ID_FORBIDDEN = re.compile(r"[^A-Za-z0-9_.:-]")
_CALLER_SEPARATORS = re.compile(r"[\s().-]")
_CALLER_RE = re.compile(r"^\+?[0-9]{2,20}$")
_ABSENT = frozenset({"", "NONE"})
_MAX_ID = 64
_MAX_CALL_ID = 128


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a line yields no event; ``informational`` for known events with no contract twin."""

    reason: str
    informational: bool = False


def format_ts(epoch: float) -> str:
    """Unix seconds -> RFC 3339 UTC with milliseconds, ``2026-11-22T10:15:30.250Z``."""
    return rfc3339_of(datetime.fromtimestamp(epoch, tz=UTC))


def normalise_id(raw: str) -> str:
    """Fit an Asterisk name to the contract id rule ``[A-Za-z0-9_.:-]{1,64}``.

    ``/`` becomes ``:`` (``SIP/1001`` -> ``SIP:1001``), any other character outside the
    rule becomes ``_`` (``Local/1001@agents`` -> ``Local:1001_agents``).
    """
    return _bounded(_ID_FORBIDDEN.sub("_", raw.replace("/", ":")), _MAX_ID)


def _bounded(text: str, limit: int) -> str:
    """Cut an over-long id, keeping it unique with a digest of the whole."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: limit - 9]}-{digest}"


def _name(raw: str) -> str | None:
    """A queue or agent field as a contract id; ``NONE`` or empty is no name."""
    raw = raw.strip()
    return None if raw in _ABSENT else normalise_id(raw)


def _call_id(raw: str) -> str | None:
    """Asterisk's uniqueid (``1795338010.42``) as the contract's printable call id."""
    raw = raw.strip()
    if raw in _ABSENT:
        return None
    return _bounded("".join(c if c.isprintable() else "_" for c in raw), _MAX_CALL_ID)


def _caller(raw: str) -> str | None:
    """A caller id that is a phone number, separators dropped; ``anonymous`` and names are not."""
    number = _CALLER_SEPARATORS.sub("", raw)
    return number if _CALLER_RE.match(number) else None


@dataclass(frozen=True, slots=True)
class _Line:
    digest: str
    ts: str
    call_id: str | None
    queue_id: str | None
    agent_id: str | None
    data: list[str]

    def event(self, kind: str, **fields: Any) -> Event:
        # The id hashes the line itself, so replaying a file, or a longer copy of it, again
        # gives the same ids and the processor applies each event once.
        return {"event_id": f"ql:{self.digest}:{kind}", "type": kind, "ts": self.ts, **fields}

    def datum(self, index: int) -> str:
        return self.data[index].strip() if index < len(self.data) else ""


@dataclass(slots=True)
class _Agent:
    queues: set[str] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)
    paused: bool = False
    logged_off: bool = False
    shown: tuple[str, tuple[str, ...]] | None = None

    @property
    def state(self) -> str:
        if self.logged_off:
            return "offline"
        if self.calls:
            return "busy"
        return "away" if self.paused else "available"


class QueueLogMapper:
    """Maps queue_log lines, in file order, to contract events.

    ``callback_keys``: the DTMF keys with which a caller leaves the queue (EXITWITHKEY) to
    ask for a call back; the dialplan decides what a key means, so none by default.
    """

    def __init__(self, callback_keys: Iterable[str] = ()) -> None:
        self._callback_keys = frozenset(callback_keys)
        self._agents: dict[str, _Agent] = {}
        self._handlers: dict[str, Callable[[_Line], list[Event] | Skip]] = {
            "ENTERQUEUE": self._enter,
            "CONNECT": self._connect,
            "COMPLETEAGENT": self._complete,
            "COMPLETECALLER": self._complete,
            "TRANSFER": self._complete,
            "BLINDTRANSFER": self._complete,
            "ATTENDEDTRANSFER": self._complete,
            "ABANDON": self._abandon,
            "EXITWITHKEY": self._exit_with_key,
            "EXITWITHTIMEOUT": self._exit,
            "EXITEMPTY": self._exit,
            "ADDMEMBER": partial(self._membership, joins=True),
            "REMOVEMEMBER": partial(self._membership, joins=False),
            "PAUSE": partial(self._presence, paused=True),
            "PAUSEALL": partial(self._presence, paused=True),
            "UNPAUSE": partial(self._presence, paused=False),
            "UNPAUSEALL": partial(self._presence, paused=False),
            "AGENTLOGIN": partial(self._presence, paused=False, logged_off=False),
            "AGENTCALLBACKLOGIN": partial(self._presence, paused=False, logged_off=False),
            "AGENTLOGOFF": partial(self._presence, logged_off=True),
            "AGENTCALLBACKLOGOFF": partial(self._presence, logged_off=True),
        }

    def map_line(self, line: str) -> list[Event] | Skip:
        """The events of one line ``epoch|callid|queue|agent|EVENT|data1|...``, or why none."""
        text = line.strip()
        fields = text.split("|")
        if len(fields) < 5:
            return Skip("too few fields")
        epoch, call_id, queue, agent, name, *data = fields
        try:
            ts = format_ts(float(epoch))
        except (ValueError, OverflowError, OSError):
            return Skip("bad epoch")
        handler = self._handlers.get(name)
        if handler is None:
            if name in INFORMATIONAL:
                return Skip(name, informational=True)
            return Skip(f"unknown event {name or '(empty)'}")
        return handler(
            _Line(
                digest=hashlib.sha256(text.encode()).hexdigest()[:24],
                ts=ts,
                call_id=_call_id(call_id),
                queue_id=_name(queue),
                agent_id=_name(agent),
                data=data,
            )
        )

    # -- calls -------------------------------------------------------------------------

    def _call(self, line: _Line, kind: str, **fields: Any) -> Event | Skip:
        if line.call_id is None:
            return Skip("no call id")
        if line.queue_id is None:
            return Skip("no queue")
        return line.event(kind, call_id=line.call_id, queue_id=line.queue_id, **fields)

    def _enter(self, line: _Line) -> list[Event] | Skip:
        # data1 is the URL, data2 the caller id; Asterisk logs no priority.
        caller = _caller(line.datum(1))
        event = self._call(line, "call.queued", **({"caller": caller} if caller else {}))
        return event if isinstance(event, Skip) else [event]

    def _connect(self, line: _Line) -> list[Event] | Skip:
        if line.agent_id is None:
            return Skip("no agent")
        event = self._call(line, "call.answered", agent_id=line.agent_id)
        if isinstance(event, Skip):
            return event
        agent = self._agents.setdefault(line.agent_id, _Agent())
        # Static members (queues.conf) never log ADDMEMBER: answering shows membership.
        agent.queues.add(event["queue_id"])
        agent.calls.add(event["call_id"])
        return [event, *self._agent_state(line, line.agent_id)]

    def _complete(self, line: _Line) -> list[Event] | Skip:
        # COMPLETE* and the transfers all close the answered leg: the contract's transfer
        # needs the target queue, which queue_log does not name (see docs/queue_log.md).
        agent_fields = {} if line.agent_id is None else {"agent_id": line.agent_id}
        event = self._call(line, "call.ended", **agent_fields)
        if isinstance(event, Skip):
            return event
        if line.agent_id is None or line.agent_id not in self._agents:
            return [event]
        self._agents[line.agent_id].calls.discard(event["call_id"])
        return [event, *self._agent_state(line, line.agent_id)]

    def _abandon(self, line: _Line) -> list[Event] | Skip:
        event = self._call(line, "call.abandoned")
        return event if isinstance(event, Skip) else [event]

    def _exit_with_key(self, line: _Line) -> list[Event] | Skip:
        accepted = line.datum(0) in self._callback_keys
        event = self._call(line, "call.callback_accepted" if accepted else "call.abandoned")
        return event if isinstance(event, Skip) else [event]

    def _exit(self, line: _Line) -> list[Event] | Skip:
        # The queue, not the caller, ended the wait (timeout, no agents): the call is over
        # in this queue; the contract counts a call.ended of a waiting call as abandoned.
        event = self._call(line, "call.ended")
        return event if isinstance(event, Skip) else [event]

    # -- agents ------------------------------------------------------------------------

    def _membership(self, line: _Line, *, joins: bool) -> list[Event] | Skip:
        """ADDMEMBER / REMOVEMEMBER: a dynamic member with no queue left is offline."""
        if line.agent_id is None:
            return Skip("no agent")
        if line.queue_id is None:
            return Skip("no queue")
        agent = self._agents.setdefault(line.agent_id, _Agent())
        if joins:
            agent.queues.add(line.queue_id)
        else:
            agent.queues.discard(line.queue_id)
        agent.logged_off = not agent.queues
        return self._agent_state(line, line.agent_id)

    def _presence(
        self, line: _Line, *, paused: bool | None = None, logged_off: bool | None = None
    ) -> list[Event] | Skip:
        """PAUSE*, UNPAUSE*, AGENT*LOGIN, AGENT*LOGOFF.

        The contract gives an agent one state for all its queues, so a pause in any
        queue makes it away everywhere, and an unpause in any queue available again.
        """
        if line.agent_id is None:
            return Skip("no agent")
        agent = self._agents.setdefault(line.agent_id, _Agent())
        if line.queue_id is not None:
            agent.queues.add(line.queue_id)
        if paused is not None:
            agent.paused = paused
        if logged_off is not None:
            agent.logged_off = logged_off
        return self._agent_state(line, line.agent_id)

    def _agent_state(self, line: _Line, agent_id: str) -> list[Event]:
        """An ``agent.state`` when the agent's state or queues changed, else nothing."""
        agent = self._agents[agent_id]
        shown = (agent.state, tuple(sorted(agent.queues)))
        if shown == agent.shown:
            return []
        agent.shown = shown
        return [line.event("agent.state", agent_id=agent_id, state=shown[0], queues=list(shown[1]))]
