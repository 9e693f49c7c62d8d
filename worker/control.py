"""Run-time control in each worker process: the routing and the budgets in force, polled, not read per job.

Every ``POLL_S`` one pipelined round trip reads two version numbers (the routing's, the budgets'); only a
change is read in full and swapped in whole. So an operator's `genpool models set-chain | split | rollback`
or `genpool budget set` reaches every worker within a second, without a restart and without a Redis read
per job; a job resolves its route once, at its start, and keeps it.
"""

from __future__ import annotations

import logging
import threading

import redis

from genpool.shared import keys
from genpool.shared.ratelimit.budgets import BudgetView, parse_registry
from genpool.shared.routing import LiveRouting, RoutingStore, RoutingTable, describe_splits

POLL_S = 0.5
log = logging.getLogger("genpool.control")


class ControlWatch:
    def __init__(self, connection: redis.Redis, store: RoutingStore, routing: LiveRouting,
                 budgets: BudgetView) -> None:
        self._redis = connection
        self._store = store
        self.routing = routing
        self.budgets = budgets

    def poll(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(keys.routing(), "version")
        pipe.hget(keys.budgets(), "version")
        routing_version, budgets_version = (int(v or 0) for v in pipe.execute())
        if routing_version != self.routing.table.version:
            self.routing.table = table = self._store.read()
            log.info("routing v%d in force: %s", table.version, describe(table))
        if budgets_version != self.budgets.version:
            version, limits = parse_registry(self._redis.hgetall(keys.budgets()))
            self.budgets.update(version, limits)
            log.info("budgets v%d: %s", version, ", ".join(f"{s} ${v / 1e6:g}/day" for s, v in
                                                          sorted(limits.items())) or "none")

    def start(self, stop: threading.Event, interval_s: float = POLL_S) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 - the watch must outlive any one bad pass (e.g. Redis down)
                    log.exception("control: poll failed; jobs keep the routing and budgets they had")

        thread = threading.Thread(target=loop, name="genpool-control", daemon=True)
        thread.start()
        return thread


def describe(table: RoutingTable) -> str:
    """``text a,b,c; image x,y (split m=10%)``."""
    parts = []
    for kind, route in table.kinds.items():
        split = f" (split {describe_splits(route.splits)})" if route.splits else ""
        parts.append(f"{kind} {','.join(route.chain)}{split}")
    return "; ".join(parts)
