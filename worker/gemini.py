"""The google-genai boundary: one Client per process, request building, the call, error translation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genpool.shared import errors as e
from genpool.shared.jobs import ChatRequest, ImageRequest, JsonRequest, Request, default_safety
from genpool.shared.settings import Settings
from genpool.worker import answers, translate
from genpool.worker.answers import Generation

if TYPE_CHECKING:
    from google.genai.types import ContentDict

Turn = tuple[str, str]  # (role, text)


@dataclass(frozen=True)
class Call:
    """Everything one generate_content call needs, built once per job and reused down the chain."""

    request: Request
    contents: str | list[ContentDict]
    config_kwargs: dict[str, Any]
    #: Set for jobs that stream: the call is generate_content_stream and each piece of text is handed
    #: here (model, text) as it arrives; the answer is still parsed and stored whole.
    on_chunk: Callable[[str, str], None] | None = None
    #: Its config is genpool's default safety settings and nothing else: it may go through a plain client.
    plain: bool = False


class GeminiGateway:
    """Holds the process's google-genai Clients (their HTTP pools are reused across jobs and threads).

    The SDK turns a per-call config into the request at ~0.9 ms of CPU a call (bench_cpu), whatever it
    holds. Most calls carry only genpool's default safety settings and their model's timeout: those go
    through a *plain* client per such timeout (``plain_timeouts_s``, the catalog's), whose options add the
    same safety settings to every request body (``HttpOptions.extra_body``) and set the timeout, so the
    call has no config at all. Every other call (generation options, a schema, an image, a stream, a
    timeout cut short by the job's deadline) passes its config as before.
    """

    def __init__(self, settings: Settings, max_connections: int = 256,
                 plain_timeouts_s: Iterable[float] = (), transport: Any = None) -> None:
        import httpx2
        from google import genai
        from google.genai import types

        self._types = types
        limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        client_args: dict[str, Any] = {"limits": limits} if transport is None else {"transport": transport}

        def client(timeout_s: float, extra_body: dict[str, Any] | None = None) -> Any:
            options = types.HttpOptions(
                base_url=settings.gemini_base_url, timeout=_ms(timeout_s), extra_body=extra_body,
                client_args=client_args, async_client_args={"limits": limits},
            )
            # retry_options stays unset: the SDK's own retry is off, genpool's tenacity layer is the only one.
            return genai.Client(api_key=settings.require_api_key(), http_options=options)

        self.client = client(settings.job_deadline_s)
        self._plain = {_ms(t): client(t, DEFAULT_CONFIG_BODY) for t in set(plain_timeouts_s)}
        # built once: ~50 µs a job otherwise (the SDK keeps, never changes, the settings a config is given)
        self._default_safety = [types.SafetySetting(category=s.category, threshold=s.threshold) for s in DEFAULT_SAFETY]

    def build(self, request: Request, history: list[Turn] | None = None) -> Call:
        config = self._config(request)
        return Call(request=request, contents=self._contents(request, history or []), config_kwargs=config,
                    plain=list(config) == ["safety_settings"] and config["safety_settings"] is self._default_safety)

    def generate(self, call: Call, model: str, timeout_s: float) -> Generation:
        """One attempt on one model; every failure comes out as a genpool error."""
        plain = self._plain.get(_ms(timeout_s)) if call.plain and call.on_chunk is None else None
        try:
            if plain is not None:
                response = plain.models.generate_content(model=model, contents=call.contents)
            else:
                config = self._types.GenerateContentConfig(
                    **call.config_kwargs, http_options=self._types.HttpOptions(timeout=_ms(timeout_s)))
                if call.on_chunk is not None:
                    response = self._stream(call, model, config, call.on_chunk)
                else:
                    response = self.client.models.generate_content(model=model, contents=call.contents,
                                                                   config=config)
        except Exception as exc:  # noqa: BLE001 - translated, nothing swallowed
            raise translate.from_exception(exc) from exc
        return parse(call.request, response)

    def _stream(self, call: Call, model: str, config: Any, on_chunk: Callable[[str, str], None]) -> Any:
        """generate_content_stream: relay each piece of text, then one response holding the whole answer
        (the last chunk's finish reason and usage, the joined text) for the same parsing as a plain call."""
        chunks: list[Any] = []
        pieces: list[str] = []
        for chunk in self.client.models.generate_content_stream(model=model, contents=call.contents, config=config):
            chunks.append(chunk)
            text = answers.text_of(chunk)
            if text:
                pieces.append(text)
                on_chunk(model, text)
        if not chunks:
            raise e.UnusableAnswer("the stream ended without a chunk")
        return answers.joined(chunks, "".join(pieces), self._types)

    def get_model(self, model: str, timeout_s: float = 5.0) -> Any:
        """A cheap metadata call (models.get), used by health checks."""
        try:
            return self.client.models.get(
                model=model, config=self._types.GetModelConfig(http_options=self._types.HttpOptions(
                    timeout=int(timeout_s * 1000))))
        except Exception as exc:  # noqa: BLE001
            raise translate.from_exception(exc) from exc

    @staticmethod
    def _contents(request: Request, history: list[Turn]) -> str | list[ContentDict]:
        """What the SDK turns into the request's ``contents``, in the form it validates cheapest: the
        SDK re-validates ``types.Content`` objects at ~0.35 ms a call, a plain string at ~0.01 ms
        (it becomes one user turn, the same JSON on the wire) and dicts at ~0.1 ms."""
        if not isinstance(request, ChatRequest):
            return request.prompt
        turns = list(history) + [(m.role, m.text) for m in request.messages or []]
        if request.message is not None:
            turns.append(("user", request.message))
        return [{"role": role, "parts": [{"text": text}]} for role, text in turns]

    def _config(self, request: Request) -> dict[str, Any]:
        types = self._types
        gen = request.generation
        kwargs: dict[str, Any] = {
            "temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k,
            "max_output_tokens": gen.max_output_tokens, "stop_sequences": gen.stop_sequences or None,
            "safety_settings": self._default_safety if request.safety == DEFAULT_SAFETY else [
                types.SafetySetting(category=s.category, threshold=s.threshold) for s in request.safety] or None,
            "system_instruction": request.system_instruction,
        }
        if isinstance(request, JsonRequest | ChatRequest) and request.json_schema is not None:
            kwargs.update(response_mime_type="application/json", response_json_schema=request.json_schema)
        if isinstance(request, ImageRequest):
            kwargs.update(response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio=request.aspect_ratio))
        return {k: v for k, v in kwargs.items() if v is not None}


DEFAULT_SAFETY = default_safety()
#: What the SDK adds to a request's body for a config of the default safety settings alone (the same bytes:
#: tests/unit/test_gemini_plain.py).
DEFAULT_CONFIG_BODY = {"safetySettings": [{"category": s.category, "threshold": s.threshold} for s in DEFAULT_SAFETY],
                       "generationConfig": {}}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def parse(request: Request, response: Any) -> Generation:
    if isinstance(request, ImageRequest):
        return answers.image_answer(response)
    if isinstance(request, JsonRequest | ChatRequest) and request.json_schema is not None:
        return answers.json_answer(response, request.json_schema)
    return answers.text_answer(response)
