"""State: everything callstream keeps in Redis, behind one door.

Owns the key names (``keys``), the clients (``client``), a batch's rows (``rows``), the
Lua scripts (``lua/``, loaded and called by ``scripts``) and the store that applies a
batch atomically with the offsets it applied (``store``), the callback offers
(``offers``), the caller journeys (``journeys``), the opt-out list (``optout``) and the
outgoing messages (``outgoing``). Nothing outside this package speaks Redis for state.
"""

from __future__ import annotations

from stream.state.client import connect_redis
from stream.state.journeys import JourneyStore
from stream.state.keys import KeySpace
from stream.state.offers import OfferStore
from stream.state.optout import OptOutList
from stream.state.rows import CallerFact, StateBatch
from stream.state.store import QueueRules, RedisWentBack, StateStore

__all__ = [
    "CallerFact",
    "JourneyStore",
    "KeySpace",
    "OfferStore",
    "OptOutList",
    "QueueRules",
    "RedisWentBack",
    "StateBatch",
    "StateStore",
    "connect_redis",
]
