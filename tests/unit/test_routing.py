"""Live routing, pure parts: arms per job id, candidate chains, the pinned route, operator input."""

from __future__ import annotations

import pytest

from genpool.shared.catalog import parse_catalog
from genpool.shared.errors import ValidationError
from genpool.shared.jobs import new_job_id
from genpool.shared.routing import (
    ARM_CONTROL,
    ARM_REQUEST,
    KindRoute,
    Route,
    RoutingChange,
    RoutingTable,
    Split,
    bucket,
    candidate_chain,
    parse_chain,
    parse_splits,
)

CATALOG = parse_catalog({
    "models": {"a": {}, "b": {}, "c": {}, "img": {"kind": "image"}, "img2": {"kind": "image"}},
    "chains": {"text": ["a", "b"], "chat": ["a", "b"], "json": ["a", "b"], "image": ["img"]},
})


def test_a_job_lands_on_the_same_arm_every_time() -> None:
    route = KindRoute(("a", "b"), (Split("c", 5000),))
    for job_id in (new_job_id() for _ in range(50)):
        assert route.arm(job_id) == route.arm(job_id)
        assert bucket(job_id) == bucket(job_id) and 0 <= bucket(job_id) < 10_000


def test_a_ten_percent_split_sends_about_a_tenth_of_the_jobs() -> None:
    route = KindRoute(("a", "b"), (Split("c", 1000),))
    arms = [route.arm(new_job_id())[0] for _ in range(20_000)]
    share = arms.count("c") / len(arms)
    assert 0.09 <= share <= 0.11  # binomial sd 0.2 %: 5 sd either side
    assert set(arms) == {"c", ARM_CONTROL}


def test_the_candidate_heads_the_kinds_chain_and_control_keeps_it() -> None:
    assert candidate_chain("b", ("a", "b", "c")) == ("b", "a", "c")
    assert candidate_chain("d", ("a", "b")) == ("d", "a", "b")
    route = KindRoute(("a", "b"), (Split("c", 10_000),))
    assert route.arm(new_job_id()) == ("c", ("c", "a", "b"))
    assert KindRoute(("a", "b")).arm(new_job_id()) == (ARM_CONTROL, ("a", "b"))


def test_several_candidates_share_the_jobs_in_order() -> None:
    route = KindRoute(("a",), (Split("b", 2500), Split("c", 2500)))
    arms = [route.arm(new_job_id())[0] for _ in range(8000)]
    assert 0.22 <= arms.count("b") / 8000 <= 0.28 and 0.22 <= arms.count("c") / 8000 <= 0.28


def test_a_job_that_names_its_model_is_outside_the_experiment() -> None:
    table = RoutingTable(7, {"text": KindRoute(("a", "b"), (Split("c", 10_000),))})
    assert table.route("text", new_job_id(), model="b") == Route(7, ARM_REQUEST, ("a", "b"))
    assert table.route("text", new_job_id()).arm == "c"


def test_the_pinned_route_round_trips() -> None:
    route = Route(12, "gemini-3.5-flash", ("gemini-3.5-flash", "gemini-3.8-flash"))
    assert Route.from_text(route.to_text()) == route


def test_the_effective_hash_becomes_a_table_and_missing_kinds_keep_the_catalogs() -> None:
    fallback = RoutingTable.from_catalog(CATALOG)
    table = RoutingTable.from_hash({"version": "4", "chain:text": "b,a", "split:image": "img2=1250"}, fallback)
    assert table.version == 4
    assert table.kinds["text"].chain == ("b", "a") and table.kinds["chat"].chain == ("a", "b")
    assert table.kinds["image"].splits == (Split("img2", 1250),) and table.kinds["image"].splits[0].percent == 12.5


def test_a_change_says_what_changed() -> None:
    before = RoutingTable(1, {"text": KindRoute(("a", "b")), "image": KindRoute(("img",))})
    after = RoutingTable(2, {"text": KindRoute(("b",)), "image": KindRoute(("img",), (Split("img2", 1000),))})
    assert RoutingChange(before, after).lines() == ["text: chain a,b -> b", "image: split - -> img2=10%"]
    assert RoutingChange(before, before).lines() == [] and not RoutingChange(before, before).changed


def test_operator_input_is_checked_against_the_catalog() -> None:
    assert parse_chain(CATALOG, "text", "b, a") == ("b", "a")
    assert parse_splits(CATALOG, "image", ["img2=2.5"]) == (Split("img2", 250),)
    assert parse_splits(CATALOG, "text", ["c=0"]) == ()  # 0 ends the arm


@pytest.mark.parametrize(("call", "message"), [
    (lambda: parse_chain(CATALOG, "text", "a,zz"), "not in the catalog"),
    (lambda: parse_chain(CATALOG, "text", "a,img"), "makes image, not text"),
    (lambda: parse_chain(CATALOG, "text", "a,a"), "each model once"),
    (lambda: parse_chain(CATALOG, "text", " , "), "at least one model"),
    (lambda: parse_splits(CATALOG, "text", ["c"]), "MODEL=PERCENT"),
    (lambda: parse_splits(CATALOG, "text", ["c=101"]), "MODEL=PERCENT"),
    (lambda: parse_splits(CATALOG, "text", ["c=lots"]), "MODEL=PERCENT"),
    (lambda: parse_splits(CATALOG, "text", ["c=60", "b=50"]), "more than 100 %"),
    (lambda: parse_splits(CATALOG, "image", ["a=5"]), "makes text, not image"),
])
def test_bad_operator_input_is_refused(call, message) -> None:
    with pytest.raises(ValidationError, match=message):
        call()
