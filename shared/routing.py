"""Live routing: the model chain each job kind runs, and A/B splits, kept in Redis.

One source of truth, as for the limits (docs/ratelimit.md): at start every worker writes the chains of its
catalog + environment (``sync``, the catalog wins); an operator's change (`genpool models set-chain | split`)
is an override stored beside it, visible, kept until `genpool models rollback`. ``shared/lua/routing.lua`` is
the only writer of the routing in force and bumps its ``version`` on every change; workers poll the version
(worker/control.py) and resolve each job's route in memory: no Redis read per job.

A split sends a share of a kind's jobs (in basis points, deterministic per job id: a re-run lands on the same
arm) to a candidate chain: the candidate model first, then the kind's chain without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
from redis import exceptions as rexc

from genpool.shared import contract, keys, luascript
from genpool.shared.catalog import Catalog
from genpool.shared.errors import ServiceUnavailable, ValidationError

ARM_CONTROL = "control"  # the kind's chain as it is
ARM_REQUEST = "request"  # the job named its own model: outside any experiment
BASIS_POINTS = 10_000  # a split's share: 1 basis point = 0.01 % of the kind's jobs

_SCRIPT = luascript.read("genpool.shared", "lua/routing.lua")


def bucket(job_id: str) -> int:
    """The job's place in [0, 10000): the same for every worker and every run of the job."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") % BASIS_POINTS


def candidate_chain(model: str, chain: Sequence[str]) -> tuple[str, ...]:
    return (model, *[m for m in chain if m != model])


@dataclass(frozen=True)
class Split:
    model: str
    basis_points: int

    @property
    def percent(self) -> float:
        return self.basis_points / 100


@dataclass(frozen=True)
class KindRoute:
    chain: tuple[str, ...]
    splits: tuple[Split, ...] = ()

    def arm(self, job_id: str) -> tuple[str, tuple[str, ...]]:
        """The arm a job falls in (a candidate model, or control) and that arm's chain."""
        place, edge = bucket(job_id), 0
        for split in self.splits:
            edge += split.basis_points
            if place < edge:
                return split.model, candidate_chain(split.model, self.chain)
        return ARM_CONTROL, self.chain


@dataclass(frozen=True)
class Route:
    """What a job runs on, resolved once at its first start and kept (``keys.job_route``) across re-runs."""

    version: int
    arm: str
    chain: tuple[str, ...]

    def to_text(self) -> str:
        return f"{self.version}|{self.arm}|{','.join(self.chain)}"

    @classmethod
    def from_text(cls, text: str) -> Route:
        version, arm, chain = text.split("|", 2)
        return cls(int(version), arm, tuple(m for m in chain.split(",") if m))


@dataclass(frozen=True)
class RoutingTable:
    """The routing in force at ``version`` (0: this process's catalog, before Redis was read)."""

    version: int
    kinds: Mapping[str, KindRoute]

    def route(self, kind: str, job_id: str, model: str | None = None) -> Route:
        """The job's arm and its base chain (the per-job model and fallback switch narrow it later)."""
        if model:
            return Route(self.version, ARM_REQUEST, self.kinds[kind].chain)
        arm, chain = self.kinds[kind].arm(job_id)
        return Route(self.version, arm, chain)

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> RoutingTable:
        return cls(0, {kind: KindRoute(tuple(chain)) for kind, chain in catalog.chains.items()})

    @classmethod
    def from_hash(cls, raw: Mapping[str, str], fallback: RoutingTable) -> RoutingTable:
        """The effective hash as a table; a kind it lacks keeps ``fallback``'s chain."""
        kinds = {}
        for kind, known in fallback.kinds.items():
            chain = tuple(m for m in raw.get(f"chain:{kind}", "").split(",") if m) or known.chain
            kinds[kind] = KindRoute(chain, parse_split_text(raw.get(f"split:{kind}", "")))
        return cls(int(raw.get("version", 0)), kinds)


class LiveRouting:
    """The routing table one worker process runs jobs with, replaced whole when the version changes (a job
    thread reads one consistent table without a lock)."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table


def parse_split_text(text: str) -> tuple[Split, ...]:
    """``m1=1000,m2=500`` (basis points) -> splits."""
    out = []
    for item in filter(None, text.split(",")):
        model, _, points = item.partition("=")
        out.append(Split(model, int(points)))
    return tuple(out)


def split_text(splits: Sequence[Split]) -> str:
    return ",".join(f"{s.model}={s.basis_points}" for s in splits)


def chain_fields(chains: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return {f"chain:{kind}": ",".join(chain) for kind, chain in chains.items()}


@dataclass(frozen=True)
class RoutingChange:
    """What a write did: the routing in force before and after (``before`` is None on an empty Redis)."""

    before: RoutingTable | None
    after: RoutingTable
    override: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.before is None or self.before.version != self.after.version

    def lines(self) -> list[str]:
        """``text: chain a,b -> c,b`` / ``image: split - -> m=10%`` per kind that changed."""
        out = []
        for kind, new in self.after.kinds.items():
            old = self.before.kinds.get(kind) if self.before else None
            if old is None or old.chain != new.chain:
                out.append(f"{kind}: chain {','.join(old.chain) if old else '-'} -> {','.join(new.chain)}")
            if (old.splits if old else ()) != new.splits:
                out.append(f"{kind}: split {describe_splits(old.splits if old else ())} -> "
                           f"{describe_splits(new.splits)}")
        return out


def describe_splits(splits: Sequence[Split]) -> str:
    return ",".join(f"{s.model}={s.percent:g}%" for s in splits) or "-"


@contextmanager
def _boundary(operation: str) -> Iterator[None]:
    try:
        yield
    except (rexc.ConnectionError, rexc.TimeoutError) as exc:
        raise ServiceUnavailable(f"cannot {operation} the routing in Redis: {exc}") from exc


class RoutingStore:
    """The routing in Redis; ``catalog`` gives the kinds and the chains a kind missing from Redis keeps."""

    def __init__(self, connection: redis.Redis, catalog: Catalog) -> None:
        self._redis = connection
        self._fallback = RoutingTable.from_catalog(catalog)
        self._script = connection.register_script(_SCRIPT)

    def sync(self) -> RoutingChange:
        """A worker starting: its catalog's chains become the catalog routing (the override stays on top)."""
        catalog = chain_fields({k: r.chain for k, r in self._fallback.kinds.items()})
        return self._write("sync", [part for pair in catalog.items() for part in pair])

    def set_chain(self, kind: str, chain: Sequence[str]) -> RoutingChange:
        return self._write("set", [f"chain:{kind}", ",".join(chain)])

    def set_splits(self, kind: str, splits: Sequence[Split]) -> RoutingChange:
        """Replace the kind's split (none: the kind runs its chain only)."""
        return self._write("set", [f"split:{kind}", split_text(splits)])

    def rollback(self, kinds: Sequence[str]) -> RoutingChange:
        """Drop the override of these kinds (chain and split): back to the catalog's chains."""
        return self._write("rollback", [f"{what}:{kind}" for kind in kinds for what in ("chain", "split")])

    def read(self) -> RoutingTable:
        with _boundary("read"):
            raw = self._redis.hgetall(keys.routing())
        return RoutingTable.from_hash(_text(raw), self._fallback)

    def version(self) -> int:
        with _boundary("read"):
            raw = self._redis.hget(keys.routing(), "version")
        return int(raw or 0)

    def catalog(self) -> dict[str, str]:
        with _boundary("read"):
            return _text(self._redis.hgetall(keys.routing_catalog()))

    def override(self) -> dict[str, str]:
        with _boundary("read"):
            return _text(self._redis.hgetall(keys.routing_override()))

    def _write(self, mode: str, items: Sequence[str]) -> RoutingChange:
        with _boundary(f"{mode}"):
            old, new = self._script(keys=[keys.routing(), keys.routing_catalog(), keys.routing_override()],
                                    args=[mode, *items])
        before = RoutingTable.from_hash(_pairs(old), self._fallback) if old else None
        return RoutingChange(before, RoutingTable.from_hash(_pairs(new), self._fallback), self.override())


def _pairs(flat: Sequence[bytes]) -> dict[str, str]:
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def _text(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A hash as redis-py returns it (bytes, or str with decode_responses) -> str."""
    return {_str(k): _str(v) for k, v in raw.items()}


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- what an operator may ask for: checked against the catalog before anything is written -------------

def check_kind(kind: str) -> str:
    if kind not in contract.JOB_KINDS:
        raise ValidationError(f"unknown job kind {kind!r}; kinds: {', '.join(contract.JOB_KINDS)}")
    return kind


def check_models(catalog: Catalog, kind: str, models: Sequence[str]) -> None:
    """Every model is in the catalog and makes what the kind needs (text or image)."""
    wanted = contract.output_of(kind)
    for model in models:
        if model not in catalog.models:
            raise ValidationError(f"model {model!r} is not in the catalog (known: {', '.join(sorted(catalog.models))})")
        if catalog.models[model].kind != wanted:
            raise ValidationError(f"model {model!r} makes {catalog.models[model].kind}, not {wanted} ({kind} jobs)")


def parse_chain(catalog: Catalog, kind: str, text: str) -> tuple[str, ...]:
    chain = tuple(m.strip() for m in text.split(",") if m.strip())
    if not chain:
        raise ValidationError("a chain names at least one model: M1,M2,..")
    if len(set(chain)) != len(chain):
        raise ValidationError(f"a chain names each model once, got {','.join(chain)}")
    check_models(catalog, kind, chain)
    return chain


def parse_splits(catalog: Catalog, kind: str, items: Sequence[str]) -> tuple[Split, ...]:
    """``["m=10", "m2=2.5"]`` (percent of the kind's jobs; 0 drops the arm) -> splits; at most 100 % in all."""
    splits = []
    for item in items:
        model, sep, pct = item.partition("=")
        try:
            points = round(float(pct) * 100) if sep else -1
        except ValueError:
            points = -1
        if not model or not 0 <= points <= BASIS_POINTS:
            raise ValidationError(f"expected MODEL=PERCENT (0-100), got {item!r}")
        if points:
            splits.append(Split(model.strip(), points))
    check_models(catalog, kind, [s.model for s in splits])
    if len({s.model for s in splits}) != len(splits):
        raise ValidationError("each candidate model once per split")
    if sum(s.basis_points for s in splits) > BASIS_POINTS:
        raise ValidationError("the split's shares add up to more than 100 %")
    return tuple(splits)
