"""The callback opt-out list (contract §3): normalised caller numbers kept in one Redis set.

``callstream optout`` changes it; the callback policy reads it (``OfferStore.opted_out``).
"""

from __future__ import annotations

from stream.state.client import Redis
from stream.state.keys import KeySpace


class OptOutList:
    """The numbers that never get a callback offer."""

    def __init__(self, client: Redis, keys: KeySpace) -> None:
        self.client, self.key = client, keys.optout

    async def numbers(self) -> list[str]:
        return sorted(str(n) for n in await self.client.smembers(self.key))

    async def add(self, number: str) -> None:
        await self.client.sadd(self.key, number)

    async def remove(self, number: str) -> None:
        await self.client.srem(self.key, number)

    async def which(self, callers: list[str]) -> set[str]:
        """The callers of these who are on the list."""
        if not callers:
            return set()
        flags = await self.client.smismember(self.key, callers)
        return {caller for caller, flag in zip(callers, flags, strict=True) if flag}
