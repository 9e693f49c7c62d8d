"""InFlight: which calls to a model count as stalled (pure, explicit clock)."""

from __future__ import annotations

from genpool.worker.stalls import InFlight


def test_a_call_older_than_stall_s_with_no_later_answer_is_stalled_once() -> None:
    inflight = InFlight()
    inflight.start("m", 100.0)
    assert len(inflight.take_stalled("m", 2.0, 101.9)) == 0
    assert len(inflight.take_stalled("m", 2.0, 102.0)) == 1
    assert len(inflight.take_stalled("m", 2.0, 110.0)) == 0  # reported already


def test_a_later_call_that_answered_clears_an_older_slow_one() -> None:
    inflight = InFlight()
    inflight.start("m", 100.0)
    later = inflight.start("m", 100.5)
    inflight.finish(later, ok=True)
    assert len(inflight.take_stalled("m", 2.0, 105.0)) == 0
    stuck_after = inflight.start("m", 106.0)  # started after the last answer: can stall
    assert len(inflight.take_stalled("m", 2.0, 108.0)) == 1
    inflight.finish(stuck_after, ok=False)
    assert inflight.in_flight("m") == 1


def test_an_earlier_call_answering_does_not_clear_a_later_stuck_one() -> None:
    inflight = InFlight()
    earlier = inflight.start("m", 99.0)
    inflight.start("m", 100.0)
    inflight.finish(earlier, ok=True)
    assert len(inflight.take_stalled("m", 2.0, 102.5)) == 1


def test_models_are_separate_and_zero_stall_s_is_off() -> None:
    inflight = InFlight()
    inflight.start("a", 100.0)
    answered = inflight.start("b", 100.5)
    inflight.finish(answered, ok=True)
    assert len(inflight.take_stalled("a", 0.0, 200.0)) == 0
    assert len(inflight.take_stalled("b", 1.0, 200.0)) == 0
    assert len(inflight.take_stalled("a", 1.0, 200.0)) == 1


def test_calls_made_after_a_stalled_one_count_with_it_at_once() -> None:
    inflight = InFlight()
    for started in (100.0, 100.4, 100.8):
        inflight.start("m", started)
    assert len(inflight.take_stalled("m", 1.0, 100.9)) == 0
    assert len(inflight.take_stalled("m", 1.0, 101.0)) == 3
    inflight.start("m", 101.5)  # made while the model is stalled: counts on the next pass
    assert len(inflight.take_stalled("m", 1.0, 101.6)) == 1
    assert len(inflight.take_stalled("m", 1.0, 102.0)) == 0
