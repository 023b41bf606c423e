"""The contract's word lists, written once: the parser, the figures, the Lua scripts
(through their generated prelude), the metrics and the pages all take them from here.

Event types are spelled once too, by the event classes' ``type`` (``parse.events``).
"""

from __future__ import annotations

from typing import Literal, get_args

AgentState = Literal["available", "busy", "wrapup", "away", "offline"]
#: ``agent.state`` states (contract §1), in the order displays list them.
AGENT_STATES: tuple[AgentState, ...] = get_args(AgentState)
#: Staffed agents can take or are working calls; EWT, Erlang C and occupancy count them.
STAFFED_STATES: tuple[AgentState, ...] = ("available", "busy", "wrapup")

AttemptResult = Literal["answered", "no_answer", "busy", "failed"]
#: ``call.callback_attempt`` results (contract §1).
ATTEMPT_RESULTS: tuple[AttemptResult, ...] = get_args(AttemptResult)

#: A queue's windowed counts and counters (contract §2, §5 ``outcome``).
OUTCOMES: tuple[str, ...] = (
    "offered",
    "answered",
    "answered_in_sla",
    "abandoned",
    "short_abandoned",
    "callback_offered",
    "callback_accepted",
    "transferred_out",
)
#: Callback offer kinds and outcomes (contract §3), and why an offer was not made.
CALLBACK_KINDS: tuple[str, ...] = ("wait_threshold", "ewt_threshold", "missed_call")
CALLBACK_RESULTS: tuple[str, ...] = ("reached", "unreached", "cancelled", "refused")
CALLBACK_REFUSALS: tuple[str, ...] = ("opted_out", "caller_cap", "outside_hours", "max_pending",
                                      "already_offered")
#: The kinds of alert callstream decides (contract §4), for ``callstream_alert_firing``.
ALERT_KINDS: tuple[str, ...] = ("abandonment_spike",)
