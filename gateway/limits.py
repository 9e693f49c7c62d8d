"""Per-token limits: requests per minute (429 + Retry-After) and USD per UTC day (429 until midnight UTC).

The rate and the budget are checked in one Lua call (lua/admit.lua) against Redis's clock, so every
gateway process shares them. Spend is what the token's finished jobs cost (the worker adds each record's
cost_usd under keys.account_spend); jobs already running when the budget runs out still finish.
"""

from __future__ import annotations

import time
from importlib import resources

import redis.asyncio as aredis

from genpool.gateway.errors import BudgetExhausted, InvalidRequest, RateLimited
from genpool.gateway.tokens import TokenInfo
from genpool.shared import keys

ADMITTED, OVER_RATE, OVER_BUDGET, TOO_BIG = 0, 1, 2, 3


def utc_day(now_s: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(now_s))


def seconds_to_utc_midnight(now_s: float) -> float:
    return 86_400 - now_s % 86_400


class Limits:
    def __init__(self, connection: aredis.Redis) -> None:
        source = resources.files("genpool.gateway").joinpath("lua/admit.lua").read_text()
        self._admit = connection.register_script(source)

    async def admit(self, token: TokenInfo, cost: int = 1, spends: bool = False) -> None:
        """Count ``cost`` requests for the token; ``spends``: they create jobs, so the budget applies too.
        Raises RateLimited / BudgetExhausted (with retry_after_s) or InvalidRequest."""
        now_s = time.time()
        spend_key = keys.account_spend(token.name, utc_day(now_s))
        budget = token.usd_per_day if spends else -1
        status, retry_ms = await self._admit(keys=[keys.api_rate(token.name), spend_key],
                                             args=[token.rpm, cost, budget])
        if status == OVER_RATE:
            raise RateLimited(f"over {token.rpm} requests per minute for this token; retry after "
                              f"{retry_ms / 1000:.1f} s", retry_after_s=retry_ms / 1000)
        if status == OVER_BUDGET:
            raise BudgetExhausted(f"this token's budget of {token.usd_per_day:g} USD for today (UTC) is spent",
                                  retry_after_s=seconds_to_utc_midnight(now_s))
        if status == TOO_BIG:
            raise InvalidRequest(f"{cost} requests at once exceed this token's {token.rpm} requests per minute")
