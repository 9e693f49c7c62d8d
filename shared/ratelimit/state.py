"""A model's fleet-wide state hash (``keys.model_state``): its field names, in one place.

Written by the breaker (``lua/breaker.lua``) and the 429 cooldown (``lua/penalize.lua``), read by the
limiter's ``lua/acquire.lua`` in the same round trip as the grant, and by the operator tools. The Lua
scripts spell the same names; tests/unit/test_state_fields.py checks they use no others.
"""

from __future__ import annotations

UNAVAILABLE_UNTIL_MS = "unavailable_until_ms"  # skipped by every worker until then (breaker open / 404)
UNAVAILABLE_REASON = "unavailable_reason"  # "breaker_open:<error kind>" or e.g. "not_found"
HALF_OPEN = "half_open"  # "1": after unavailable_until_ms, exactly one caller probes the model
PROBE_UNTIL_MS = "probe_until_ms"  # the current probe's slot ends then
FAIL_COUNT = "fail_count"  # transient failures in the current window
FAIL_WINDOW_MS = "fail_window_ms"  # when that window started
OPENED_AT_MS = "opened_at_ms"  # when the breaker last opened (a call granted before it is a straggler)
OPEN_MS = "open_ms"  # the last open period (doubled per failed probe)
OPENED_TOTAL = "opened_total"  # how often it opened
COOLDOWN_UNTIL_MS = "cooldown_until_ms"  # a 429 cooled the fleet down until then

FIELDS = frozenset({UNAVAILABLE_UNTIL_MS, UNAVAILABLE_REASON, HALF_OPEN, PROBE_UNTIL_MS, FAIL_COUNT,
                    FAIL_WINDOW_MS, OPENED_AT_MS, OPEN_MS, OPENED_TOTAL, COOLDOWN_UNTIL_MS})
#: ``unavailable_reason`` prefix of an open breaker (other reasons: marked down, e.g. a 404).
BREAKER_REASON = "breaker_open"
