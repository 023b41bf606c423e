"""The Lua scripts: their loading (with a prelude generated from the key names and the
contract's vocabulary) and their calls, each atomic, a batch of them in one round trip.

A script names a key by its place in ``keys.SUFFIXES`` (``prefix .. K.waiting``), the
staffed agent states as ``STAFFED``, and the shared helpers by their function names
(``ranked_member``): the loader puts in front of each script only what it uses, so every
spelling exists once and a misspelt name fails at load, not in Redis.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from stream.state.client import Redis
from stream.state.keys import SUFFIXES
from stream.state.wire import dumps
from stream.vocabulary import STAFFED_STATES

NAMES = ("apply_queue", "apply_agents", "read_queue", "raise_clock", "admit", "forget",
         "sweep_queue", "sweep_agents", "claim_out", "done_out", "cb_due", "cb_reserve",
         "cb_release", "cb_emit", "cb_refuse", "cb_attempt", "cb_cancel", "read_agents",
         "alert_inputs", "alert_move", "apply_journey", "journey_queue", "read_journeys",
         "facts_taken")
#: Scripts also loaded as a "many" form (:meth:`Scripts.many`): small steps taken for
#: many callers or offers at once, where a script call costs more than its work.
MANY = ("cb_reserve", "cb_release", "cb_emit", "cb_refuse")
#: Calls per "many" script call on one Redis.
MANY_PER_CALL = 100
#: Script calls in flight at once on a Cluster, by all of a client's users: each holds a
#: connection of its node's pool (redis-py's default: 100), and a batch's journeys can
#: make thousands of calls.
CLUSTER_CALLS_IN_FLIGHT = 64
#: Lua helpers more than one script uses, each in ``lua/shared/<name>.lua``.
SHARED_FUNCTIONS = ("ranked_member",)

#: ``(script, key or tuple of keys, *args)``
ScriptCall = tuple[Any, ...]

_KEY_NAME = re.compile(r"\bK\.([a-z_]+)")


def _keys(key: str | tuple[str, ...]) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else key


def _lua(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text(
        encoding="utf-8")


def _many(source: str) -> str:
    """A script run once per call of a list, in order, in one atomic step: KEYS all the
    calls' keys; ARGV[1] JSON, per call, [number of its keys, its args...]; returns the
    JSON list of the calls' answers (false for none)."""
    return (
        "local all_keys, calls, answers, taken = KEYS, cjson.decode(ARGV[1]), {}, 0\n"
        "local function once(KEYS, ARGV)\n" + source + "\nend\n"
        "for i, call in ipairs(calls) do\n"
        "  local n = call[1]\n"
        "  local answer = once({unpack(all_keys, taken + 1, taken + n)}, {unpack(call, 2)})\n"
        "  taken = taken + n\n"
        "  if answer == nil then answer = false end\n"
        "  answers[i] = answer\n"
        "end\n"
        "return cjson.encode(answers)\n")


def prelude(source: str) -> str:
    """The generated Lua ``source`` needs in front of it: its key suffixes (``K``), the
    staffed states (``STAFFED``) and the shared helpers it calls."""
    lines = []
    names = sorted(set(_KEY_NAME.findall(source)))
    if names:
        lines.append("local K = {" + ", ".join(f"{n} = '{SUFFIXES[n]}'" for n in names) + "}")
    if re.search(r"\bSTAFFED\b", source):
        lines.append("local STAFFED = {" + ", ".join(f"{s} = true" for s in STAFFED_STATES)
                     + "}")
    for function in SHARED_FUNCTIONS:
        if re.search(rf"\b{function}\(", source):
            lines.append(_lua(f"shared/{function}").rstrip())
    return "\n".join(lines) + "\n" if lines else ""


def sources() -> dict[str, str]:
    """Every script as Redis runs it, by name (``name*`` for the many forms)."""
    plain = {name: _lua(name) for name in NAMES}
    loaded = {name: prelude(source) + source for name, source in plain.items()}
    loaded |= {name + "*": prelude(plain[name]) + _many(plain[name]) for name in MANY}
    return loaded


class Scripts:
    """Calls the scripts on one Redis (or Cluster), loading them where Redis lost them."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._sources = sources()
        self._shas: dict[str, str] = {}
        self._loaded = False
        #: shared by every caller of this client: the pool is too
        self._in_flight = asyncio.Semaphore(CLUSTER_CALLS_IN_FLIGHT)

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.client, aioredis.RedisCluster)

    async def load(self) -> None:
        """(Re)load the scripts; needed after a Redis restart empties its script cache."""
        for name, source in self._sources.items():
            self._shas[name] = await self.client.script_load(source)
        self._loaded = True

    async def run(self, calls: Sequence[ScriptCall], raise_on_error: bool = True
                  ) -> list[Any]:
        """Script calls ``(script, key, *args)``, each atomic, all in one round trip; the
        key may be a tuple of keys (of one slot, on a Cluster)."""
        if not self._loaded:
            await self.load()
        try:
            return await self._send(calls, raise_on_error)
        except NoScriptError:
            await self.load()
            return await self._send(calls, raise_on_error)

    def in_groups(self, keys: Sequence[str], per_call: int) -> list[list[int]]:
        """The indexes of ``keys`` taken by one script call each, in order: up to
        ``per_call`` on one Redis (a call costs more than a key), one slot's on a Cluster
        (where a script's keys must share a slot)."""
        if not self.is_cluster:
            return [list(range(i, min(i + per_call, len(keys))))
                    for i in range(0, len(keys), per_call)]
        by_slot: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_slot.setdefault(key_slot(key.encode()), []).append(i)
        return list(by_slot.values())

    async def many(self, name: str, calls: Sequence[ScriptCall]) -> list[Any]:
        """Calls ``(key, *args)`` of one of the ``MANY`` scripts, answered in order, taken
        in few script calls (:meth:`in_groups`). Each call stays atomic, and calls with
        keys in one slot are taken in their order."""
        if not calls:
            return []
        groups = self.in_groups([_keys(call[0])[0] for call in calls], MANY_PER_CALL)
        batched = [(name + "*", tuple(k for i in members for k in _keys(calls[i][0])),
                    dumps([[len(_keys(calls[i][0])), *map(str, calls[i][1:])]
                           for i in members]))
                   for members in groups]
        answers: list[Any] = [None] * len(calls)
        for members, reply in zip(groups, await self.run(batched), strict=True):
            for i, answer in zip(members, json.loads(reply), strict=True):
                answers[i] = answer
        return answers

    async def _send(self, calls: Sequence[ScriptCall], raise_on_error: bool) -> list[Any]:
        """On a Cluster, which refuses scripts in pipelines, as concurrent calls instead (a
        bounded number at once)."""
        if isinstance(self.client, aioredis.RedisCluster):
            cluster, gate = self.client, self._in_flight

            async def call(name: str, key: str | tuple[str, ...], *args: Any) -> Any:
                async with gate:
                    return await cluster.evalsha(self._shas[name], len(_keys(key)),
                                                 *_keys(key), *args)

            replies = list(await asyncio.gather(*(call(*each) for each in calls),
                                                return_exceptions=not raise_on_error))
        else:
            pipe = self.client.pipeline(transaction=False)
            for name, key, *args in calls:
                pipe.evalsha(self._shas[name], len(_keys(key)), *_keys(key), *args)
            replies = list(await pipe.execute(raise_on_error=raise_on_error))
        for reply in replies:
            if isinstance(reply, NoScriptError):
                raise reply
            if isinstance(reply, BaseException) and not isinstance(reply, ResponseError):
                raise reply  # connection trouble: nothing to read from the other replies
        return replies
