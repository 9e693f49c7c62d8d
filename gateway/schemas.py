"""What the API answers, as documented models, and the record as a client sees it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from genpool.shared.jobs import ResultRecord


class ErrorBody(BaseModel):
    code: str
    message: str
    retry_after_s: int | None = None  # with 429 and 503, also as the Retry-After header


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in (
        (400, "invalid request (the message names the field)"), (401, "missing, unknown or revoked token"),
        (404, "no such job or conversation for this token"), (409, "not finished / conversation busy"),
        (413, "request body too large"), (429, "over the token's requests per minute or USD per day"),
        (503, "the queue (Redis) cannot be reached"),
    )
}


def public_record(record: ResultRecord) -> dict[str, Any]:
    """The result record, with the conversation id the client used (not the per-token one inside)."""
    out = record.model_dump(mode="json")
    if record.conversation_id and record.account:
        out["conversation_id"] = record.conversation_id.removeprefix(f"{record.account}:")
    return out
