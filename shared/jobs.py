"""Job requests and result records: the versioned JSON wire format between producer and worker."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from genpool.shared.contract import PRESETS, AspectRatio, Preset
from genpool.shared.schema import schema_problems

WIRE_VERSION: Literal[1] = 1
MAX_PROMPT_CHARS = 2_000_000
MAX_MESSAGES = 500
HARM_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)
Threshold = Literal["BLOCK_NONE", "BLOCK_ONLY_HIGH", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_LOW_AND_ABOVE", "OFF"]
Category = Literal[
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
]
Priority = Literal["high", "default", "low"]
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
#: Who submitted a job (a gateway token's name): its spend per day is counted (keys.account_spend).
ACCOUNT_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty or only whitespace")
    return text


Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS), AfterValidator(_not_blank)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationConfig(_Strict):
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=1, le=1000)
    max_output_tokens: int | None = Field(None, ge=1, le=65_536)
    stop_sequences: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list,
                                                                                     max_length=5)


class SafetySetting(_Strict):
    category: Category
    threshold: Threshold = "BLOCK_MEDIUM_AND_ABOVE"


def default_safety() -> list[SafetySetting]:
    return [SafetySetting(category=c) for c in HARM_CATEGORIES]


class _Request(_Strict):
    model: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]{1,80}$")] | None = None
    allow_fallback: bool = True
    system_instruction: Annotated[str, Field(max_length=MAX_PROMPT_CHARS), AfterValidator(_not_blank)] | None = None
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    safety: list[SafetySetting] = Field(default_factory=default_safety, max_length=10)
    cache: bool | None = None  # serve an identical request's stored answer (None: GENPOOL_CACHE decides)
    on_budget: Literal["defer", "fail"] | None = None  # a spent budget (None: GENPOOL_ON_BUDGET decides)

    def prompt_chars(self) -> int:
        return len(self.system_instruction or "")


class _Streamable(_Request):
    #: Generate with Gemini's streaming call and publish the answer's chunks as they come (job events).
    stream: bool = False


def _check_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    problems = schema_problems(schema) if schema is not None else []
    if problems:
        raise ValueError("invalid json_schema: " + "; ".join(problems[:5]))
    return schema


class TextRequest(_Streamable):
    kind: Literal["text"] = "text"
    prompt: Prompt

    def prompt_chars(self) -> int:
        return super().prompt_chars() + len(self.prompt)


class ChatMessage(_Strict):
    role: Literal["user", "model"]
    text: Prompt


class ChatRequest(_Streamable):
    """Either the whole history in ``messages`` (last one from the user), or a ``conversation_id`` whose
    history genpool keeps in Redis plus the new ``message``. With ``json_schema`` the reply is JSON checked
    against it (like a json job), and a conversation keeps the latest reply as its structured state."""

    kind: Literal["chat"] = "chat"
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=MAX_MESSAGES)
    conversation_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    message: Prompt | None = None
    json_schema: dict[str, Any] | None = None

    _valid_schema = field_validator("json_schema")(_check_schema)

    @model_validator(mode="after")
    def _one_form(self) -> ChatRequest:
        if self.conversation_id is not None:
            if self.messages is not None:  # the stored history and this one would both be sent
                raise ValueError("a chat has either 'messages' (the whole history) or 'conversation_id' and "
                                 "'message' (genpool keeps the history), not both")
            if self.message is None:
                raise ValueError("a chat with conversation_id needs 'message' (the new user turn)")
        elif self.messages is None:
            raise ValueError("a chat needs 'messages' (the history) or 'conversation_id' and 'message'")
        if self.message is None and self.messages and self.messages[-1].role != "user":
            raise ValueError("the last chat message must be from the user")
        return self

    def prompt_chars(self) -> int:
        history = sum(len(m.text) for m in self.messages or [])
        return super().prompt_chars() + history + len(self.message or "")


class JsonRequest(_Streamable):
    kind: Literal["json"] = "json"
    prompt: Prompt
    json_schema: dict[str, Any]

    _valid_schema = field_validator("json_schema")(_check_schema)

    def prompt_chars(self) -> int:
        return super().prompt_chars() + len(self.prompt)


class ImageRequest(_Request):
    kind: Literal["image"] = "image"
    prompt: Prompt
    aspect_ratio: AspectRatio = "1:1"
    preset: Preset | None = None

    @model_validator(mode="after")
    def _preset(self) -> ImageRequest:
        if self.preset is not None:
            ratio = PRESETS[self.preset]
            if "aspect_ratio" in self.model_fields_set and self.aspect_ratio != ratio:
                raise ValueError(f"preset {self.preset} is {ratio}; aspect_ratio {self.aspect_ratio} contradicts "
                                 "it: give one or the other")
            object.__setattr__(self, "aspect_ratio", ratio)
        return self

    def prompt_chars(self) -> int:
        return super().prompt_chars() + len(self.prompt)


Request = Annotated[TextRequest | ChatRequest | JsonRequest | ImageRequest, Field(discriminator="kind")]
REQUEST_ADAPTER: TypeAdapter[Request] = TypeAdapter(Request)


def parse_request(data: Any) -> Request:
    """Validate a request given as a dict (or a request model); raises pydantic.ValidationError."""
    if isinstance(data, TextRequest | ChatRequest | JsonRequest | ImageRequest):
        return data
    return REQUEST_ADAPTER.validate_python(data)


def new_job_id() -> str:
    return uuid.uuid4().hex


class Envelope(_Strict):
    """What travels on the queue: one JSON object, versioned."""

    v: Literal[1] = WIRE_VERSION
    job_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    request: Request
    submitted_at: float = Field(default_factory=time.time)
    deadline_s: float = Field(300.0, gt=0, le=86_400)
    events: bool = False  # publish progress to the job's event stream (shared/events.py)
    account: Annotated[str, Field(pattern=ACCOUNT_PATTERN)] | None = None
    #: The producer (its waiter id) the worker announces the written record to (shared/notify.py).
    notify: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None

    def wire(self) -> dict[str, Any]:
        """The JSON body put on the queue. Fields added after v1 shipped are left out at their defaults,
        so a job that does not use them is read by workers of an earlier release too."""
        data = self.model_dump(mode="json")
        _drop_defaults(data, ADDED_ENVELOPE_FIELDS)
        _drop_defaults(data["request"], ADDED_REQUEST_FIELDS)
        return data


ADDED_ENVELOPE_FIELDS: dict[str, Any] = {"events": False, "account": None, "notify": None}
ADDED_REQUEST_FIELDS: dict[str, Any] = {"stream": False, "json_schema": None, "cache": None, "on_budget": None}


def _drop_defaults(data: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, default in fields.items():
        if name in data and data[name] == default:
            del data[name]


class StorageRef(BaseModel):
    bucket: str
    key: str


class ErrorInfo(BaseModel):
    type: str
    message: str


class AttemptRecord(BaseModel):
    model: str
    attempt: int
    outcome: str  # "ok" or an error kind
    latency_s: float = 0.0
    wait_s: float = 0.0
    start_ms: int = 0  # the limiter's granted start time (Redis clock, epoch ms); 0 for a skip


class ResultRecord(BaseModel):
    """The stable, documented result of one job (see README, 'Result record')."""

    id: str
    status: Literal["finished", "failed"]
    kind: str
    model_used: str | None = None
    models_tried: list[str] = Field(default_factory=list)
    attempts: int = 0
    fallbacks_used: int = 0
    finish_reason: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    duration_s: float = 0.0
    storage: StorageRef | None = None
    error: ErrorInfo | None = None
    model_version: str | None = None
    attempt_log: list[AttemptRecord] = Field(default_factory=list)
    conversation_id: str | None = None
    account: str | None = None
    finished_at: float = Field(default_factory=time.time)
    routing_version: int = 0  # the routing in force when the job first started (genpool models show)
    arm: str = "control"  # control, the candidate model of an A/B split, or request (the job named a model)
    cache_hit: bool = False  # served from an identical request's answer: no call, cost 0
    cached_from: str | None = None  # the job whose paid answer this is
