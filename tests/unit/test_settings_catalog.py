"""Settings.from_env parsing and the model catalog: presets, chains, settings overrides, bad files, cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genpool.shared.catalog import ModelSpec, load_catalog, parse_catalog
from genpool.shared.contract import JOB_KINDS
from genpool.shared.errors import ConfigError
from genpool.shared.settings import DEFAULT_REDIS_URL, Settings


def settings(**env: str) -> Settings:
    return Settings.from_env(env, dotenv_path=None)


def test_defaults() -> None:
    s = settings()
    assert s.redis_url == DEFAULT_REDIS_URL
    assert s.enable_fallback is True
    assert s.concurrency == 64
    assert s.job_deadline_s == 300.0
    assert not s.gemini_api_key
    assert s.models_file is None


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("YES", True), (" on ", True),
                                               ("0", False), ("false", False), ("No", False), ("off", False),
                                               ("", True)])
def test_bool_parsing(raw: str, expected: bool) -> None:
    assert settings(GEMINI_ENABLE_FALLBACK=raw).enable_fallback is expected


def test_numbers_are_parsed() -> None:
    s = settings(GENPOOL_CONCURRENCY="8", GENPOOL_JOB_DEADLINE_S="12.5", GENPOOL_MAX_LIMITER_WAIT_S="0",
                 GENPOOL_RESULT_TTL_S="3600", GENPOOL_METRICS_PORT=" 9000 ")
    assert s.concurrency == 8 and isinstance(s.concurrency, int)
    assert s.job_deadline_s == 12.5
    assert s.max_limiter_wait_s == 0
    assert s.result_ttl_s == 3600
    assert s.metrics_port == 9000


@pytest.mark.parametrize(("name", "raw"), [
    ("GEMINI_ENABLE_FALLBACK", "maybe"),
    ("GENPOOL_CONCURRENCY", "many"),
    ("GENPOOL_CONCURRENCY", "2.5"),
    ("GENPOOL_CONCURRENCY", "0"),
    ("GENPOOL_JOB_DEADLINE_S", "soon"),
    ("GENPOOL_RESULT_TTL_S", "59"),
    ("GENPOOL_LOG_FORMAT", "xml"),
])
def test_bad_values_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        settings(**{name: raw})


def test_text_values_are_trimmed_and_normalised() -> None:
    s = settings(REDIS_URL=" redis://r:1/2 ", S3_PREFIX="/a/b/", GENPOOL_LOG_LEVEL="debug",
                 GENPOOL_LOG_FORMAT="JSON", GEMINI_PREFERRED_MODEL="  ")
    assert s.redis_url == "redis://r:1/2"
    assert s.s3_prefix == "a/b"
    assert s.log_level == "DEBUG"
    assert s.log_format == "json"
    assert s.preferred_model is None


def test_api_key_never_in_repr() -> None:
    s = settings(GEMINI_API_KEY="AIza-very-secret-123")
    assert "AIza-very-secret-123" not in repr(s)
    assert "AIza-very-secret-123" not in str(s)
    assert s.require_api_key() == "AIza-very-secret-123"


def test_require_api_key_explains_what_to_set() -> None:
    with pytest.raises(ConfigError, match="GEMINI_API_KEY is not set"):
        settings().require_api_key()
    with pytest.raises(ConfigError, match=r"\.env"):
        settings(GEMINI_API_KEY="   ").require_api_key()


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("GEMINI_API_KEY=from-file\nGENPOOL_CONCURRENCY=3\nREDIS_URL=redis://file:6379/0\n")
    s = Settings.from_env({"REDIS_URL": "redis://env:6379/0"}, dotenv_path=dotenv)
    assert s.require_api_key() == "from-file"
    assert s.concurrency == 3
    assert s.redis_url == "redis://env:6379/0"


def test_missing_dotenv_is_fine(tmp_path: Path) -> None:
    assert Settings.from_env({}, dotenv_path=tmp_path / "nope.env").concurrency == 64


def test_bad_value_in_dotenv_names_the_variable(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("GENPOOL_HEARTBEAT_S=fast\n")
    with pytest.raises(ConfigError, match="GENPOOL_HEARTBEAT_S"):
        Settings.from_env({}, dotenv_path=dotenv)


# --- catalog ------------------------------------------------------------------------------------------

def test_default_preset_loads_with_a_chain_per_kind() -> None:
    catalog = load_catalog(settings())
    for kind in JOB_KINDS:
        chain = catalog.chain_for(kind)
        assert len(chain) >= 2
        wanted = "image" if kind == "image" else "text"
        assert all(catalog.spec(m).kind == wanted for m in chain)
    assert catalog.chain_for("image")[0] == "gemini-3.1-flash-image"
    assert catalog.chain_for("text")[0] == "gemini-3.8-flash"


def test_defaults_section_applies_unless_the_model_overrides() -> None:
    catalog = load_catalog(settings())
    assert catalog.spec("gemini-3.1-pro-preview").max_retries == 2  # from [defaults]
    assert catalog.spec("gemini-3.1-flash-lite").max_retries == 3
    assert catalog.spec("gemini-3.5-flash").timeout_s == 20


def test_image_model_setting_moves_existing_model_to_the_head() -> None:
    base = load_catalog(settings()).chain_for("image")
    chain = load_catalog(settings(GEMINI_IMAGE_MODEL="gemini-2.5-flash-image")).chain_for("image")
    assert chain[0] == "gemini-2.5-flash-image"
    assert sorted(chain) == sorted(base)


def test_image_model_setting_adds_an_unknown_model() -> None:
    catalog = load_catalog(settings(GEMINI_IMAGE_MODEL="gemini-9-image"))
    assert catalog.chain_for("image")[0] == "gemini-9-image"
    assert catalog.spec("gemini-9-image").kind == "image"
    assert len(catalog.chain_for("image")) == 4


def test_preferred_model_pins_its_kinds_chains() -> None:
    catalog = load_catalog(settings(GEMINI_PREFERRED_MODEL="gemini-3.5-flash"))
    for kind in ("text", "chat", "json"):
        assert catalog.chain_for(kind) == ("gemini-3.5-flash",)
    assert len(catalog.chain_for("image")) == 3


def test_preferred_image_model_pins_only_images() -> None:
    catalog = load_catalog(settings(GEMINI_PREFERRED_MODEL="gemini-2.5-flash-image"))
    assert catalog.chain_for("image") == ("gemini-2.5-flash-image",)
    assert len(catalog.chain_for("text")) == 3


def test_fallback_disabled_truncates_chains() -> None:
    catalog = load_catalog(settings(GEMINI_ENABLE_FALLBACK="false"))
    for kind in JOB_KINDS:
        assert len(catalog.chain_for(kind)) == 1
    assert catalog.chain_for("text", override="gemini-3.5-flash") == ("gemini-3.5-flash",)


def test_per_job_override_goes_first_and_allow_fallback() -> None:
    catalog = load_catalog(settings())
    chain = catalog.chain_for("text", override="gemini-3.1-flash-lite")
    assert chain == ("gemini-3.1-flash-lite", "gemini-3.8-flash", "gemini-3.5-flash")
    assert catalog.chain_for("text", override="gemini-3.1-pro-preview")[0] == "gemini-3.1-pro-preview"
    assert len(catalog.chain_for("text", override="gemini-3.1-pro-preview")) == 4
    assert catalog.chain_for("text", allow_fallback=False) == ("gemini-3.8-flash",)


def test_seed_preset_loads() -> None:
    catalog = load_catalog(settings(GENPOOL_MODELS_FILE="seed"))
    assert catalog.chain_for("text")[0] == "gemini-1.5-pro"
    assert catalog.spec("gemini-1.5-pro").input_token_limit == 2_097_152


def test_catalog_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[models."m-a"]\n[models."m-i"]\nkind = "image"\n'
                    '[chains]\ntext = ["m-a"]\nchat = ["m-a"]\njson = ["m-a"]\nimage = ["m-i"]\n')
    catalog = load_catalog(settings(GENPOOL_MODELS_FILE=str(path)))
    assert catalog.chain_for("image") == ("m-i",)


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GENPOOL_MODELS_FILE"):
        load_catalog(settings(GENPOOL_MODELS_FILE=str(tmp_path / "nope.toml")))


def test_unparseable_catalog_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[models\n")
    with pytest.raises(ConfigError, match="cannot read the model catalog"):
        load_catalog(settings(GENPOOL_MODELS_FILE=str(path)))


def _data(**models: dict[str, Any]) -> dict[str, Any]:
    chains = {"text": ["a"], "chat": ["a"], "json": ["a"], "image": ["i"]}
    return {"models": {"a": {}, "i": {"kind": "image"}, **models}, "chains": chains}


def test_parse_catalog_minimal() -> None:
    catalog = parse_catalog(_data())
    assert catalog.spec("a") == ModelSpec(id="a")


@pytest.mark.parametrize(("data", "needle"), [
    (_data(b={"rpmm": 5}), "unknown keys: rpmm"),
    (_data(b={"kind": "audio"}), "kind must be"),
    (_data(b={"max_retries": -1}), "max_retries"),
    (_data(b={"timeout_s": 0}), "timeout_s"),
    ({"models": {"a": {}}, "chains": {"text": ["a"], "chat": ["a"], "json": ["a"], "image": ["ghost"]}},
     "chain 'image' names models not in \\[models\\]: ghost"),
    ({"models": {"a": {}}, "chains": {"text": ["a"], "chat": ["a"], "json": ["a"]}}, "no 'image' chain"),
    ({"models": {"a": {}}, "chains": {"text": ["a"], "chat": ["a"], "json": [], "image": ["a"]}},
     "no 'json' chain"),
])
def test_bad_catalogs(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_catalog(data, source="test.toml")


def test_unknown_key_in_defaults_is_reported() -> None:
    data = _data()
    data["defaults"] = {"colour": "blue"}
    with pytest.raises(ConfigError, match="colour"):
        parse_catalog(data)


def test_spec_of_unknown_model() -> None:
    with pytest.raises(ConfigError, match="'zzz' is not in the catalog"):
        parse_catalog(_data()).spec("zzz")


def test_cost_usd() -> None:
    spec = ModelSpec(id="m", price_input_per_mtok=0.5, price_output_per_mtok=3.0, price_per_image=0.039)
    assert spec.cost_usd(1_000_000, 0) == pytest.approx(0.5)
    assert spec.cost_usd(2000, 1000) == pytest.approx(0.001 + 0.003)
    assert spec.cost_usd(0, 0, images=2) == pytest.approx(0.078)
    assert spec.cost_usd(1, 1) == pytest.approx(3.5e-6)
    assert ModelSpec(id="free").cost_usd(10**6, 10**6, 3) == 0.0


def test_cost_from_the_default_preset() -> None:
    spec = load_catalog(settings()).spec("gemini-3.8-flash")
    assert spec.cost_usd(1_000_000, 1_000_000) == pytest.approx(3.5)
