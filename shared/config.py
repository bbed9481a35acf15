"""Varia's settings: every environment variable the code reads, declared once, validated on first use.

`AppSettings` is the declaration: each field is one setting, with its name (the environment
variable), default, description and validation. From it come `Settings` (the resolved values the
code uses), the README's settings table and `local.settings.json.example`:
`python -m shared.config --write` regenerates both, and tests/test_config.py checks they match.
A bad configuration fails with every bad setting named at once. Nothing here runs at import time;
`get_settings()` reads the environment once per process and caches the result.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from shared.ai_models import IMAGE_MODELS, known_non_reasoning_model, reasoning_effort


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names every bad setting and what to do."""


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _endpoint(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    value = value.strip().rstrip("/")
    if value and not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ValueError("must be an https:// endpoint")
    return value


def _prices(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    prices: dict[str, float] = {}
    for item in value.split(","):
        key, _, price = item.partition("=")
        try:
            prices[key.strip()] = float(price)
        except ValueError:
            raise ValueError(f"{item!r} is not 'name=price'") from None
    missing = {"caption", "compose", "image"} - set(prices)
    if missing:
        raise ValueError(f"needs a price for {', '.join(sorted(missing))}")
    prices.setdefault("moderation", MODERATION_PRICE_USD)  # settings written before moderation existed
    return prices


# One Content Safety call at the S0 list price: $0.75 per 1,000 images (a text or Prompt Shields call
# of up to 1,000 characters costs about half that).
MODERATION_PRICE_USD = 0.00075


@dataclass(frozen=True)
class ImageDeployment:
    """One GPT-image deployment: where it is, its name, and the requests a minute its quota allows."""

    endpoint: str
    deployment: str
    rpm: int
    api_key: str = ""  # local use only (the fake server); empty: the app's identity

    @property
    def key(self) -> str:
        """A stable name for this deployment's quota: its endpoint's host and the deployment."""
        host = self.endpoint.split("://", 1)[-1].split("/", 1)[0]
        return f"{host}/{self.deployment}"


class _DeploymentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: Annotated[str, BeforeValidator(lambda v: _endpoint(v))]
    deployment: str = Field(min_length=1)
    rpm: int = Field(ge=1, le=100_000)
    api_key: str = ""


def _deployments(value: Any) -> Any:
    """`VARIA_IMAGE_DEPLOYMENTS`: a JSON list of {"endpoint", "deployment", "rpm"} ("api_key" locally)."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return ()
    try:
        items = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(items, list):
        raise ValueError('must be a JSON list of {"endpoint": ..., "deployment": ..., "rpm": ...}')
    entries = [_DeploymentEntry.model_validate(item) for item in items]
    keys = [ImageDeployment(e.endpoint, e.deployment, e.rpm).key for e in entries]
    if len(set(keys)) != len(keys):
        raise ValueError("names one deployment twice")
    return tuple(ImageDeployment(e.endpoint, e.deployment, e.rpm, e.api_key) for e in entries)


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Text = Annotated[str, BeforeValidator(_stripped)]
Endpoint = Annotated[str, BeforeValidator(_endpoint)]


def _choice(*values: str) -> Any:
    return Annotated[Literal[values], BeforeValidator(_lower)]


# Only meaningful on a laptop (keys, local folders): never an Azure app setting.
LOCAL_ONLY: dict[str, Any] = {"local_only": True}


class AppSettings(BaseModel):
    """Every setting Varia reads. The field name is the environment variable."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    AZURE_CLIENT_ID: Text = Field(
        "", description="Client id of the user-assigned managed identity (empty: default identity)"
    )
    AZURE_OPENAI_ENDPOINT: Endpoint = Field(
        "", description="Azure OpenAI endpoint, `https://<name>.openai.azure.com` (empty: offline)"
    )
    AZURE_OPENAI_API_KEY: Text = Field(
        "",
        json_schema_extra=LOCAL_ONLY,
        description="Azure OpenAI key, for local use only; empty means keyless (Entra ID)",
    )
    AZURE_OPENAI_CHAT_DEPLOYMENT: Text = Field(
        "gpt-5.4-mini", description="Chat deployment that composes prompts (and captions, as fallback)"
    )
    AZURE_OPENAI_CHAT_MODEL: Text = Field(
        "gpt-5.4-mini",
        description="Model the chat deployment runs (the templates write it): reasoning models (gpt-5, o-series) "
        "get `reasoning_effort` and room to reason (see [Models](#models))",
    )
    VARIA_CHAT_REASONING_EFFORT: _choice("auto", "off", "none", "minimal", "low", "medium", "high") = Field(  # type: ignore[valid-type]
        "auto",
        description="`reasoning_effort` sent to the chat model: `auto` (low for reasoning models, nothing for "
        "others), `off` (never sent), or `none`, `minimal`, `low`, `medium`, `high` as the model accepts",
    )
    AZURE_OPENAI_IMAGE_DEPLOYMENT: Text = Field(
        "gpt-image-2", description="GPT-image deployment that draws the variations"
    )
    AZURE_OPENAI_IMAGE_MODEL: _choice(*IMAGE_MODELS) = Field(  # type: ignore[valid-type]
        "gpt-image-2",
        description="Model the image deployment runs (the templates write it): `gpt-image-2` takes any size "
        "(16:9 for the kids profile, the source's shape otherwise), `gpt-image-1.5`, `gpt-image-1-mini` and "
        "`gpt-image-1` three fixed sizes (see [Models](#models))",
    )
    AZURE_VISION_ENDPOINT: Endpoint = Field(
        "", description="Azure AI Vision endpoint for captions (empty: caption with chat or offline)"
    )
    AZURE_VISION_API_KEY: Text = Field(
        "", json_schema_extra=LOCAL_ONLY, description="Azure AI Vision key, for local use only; empty means keyless"
    )
    AZURE_CONTENT_SAFETY_ENDPOINT: Endpoint = Field(
        "",
        description="Azure AI Content Safety endpoint, `https://<name>.cognitiveservices.azure.com`: rates the "
        "request, the composed prompt and each kids image, and runs Prompt Shields (empty: the word check only)",
    )
    AZURE_CONTENT_SAFETY_API_KEY: Text = Field(
        "",
        json_schema_extra=LOCAL_ONLY,
        description="Azure AI Content Safety key, for local use only; empty means keyless",
    )
    VARIA_MODERATION_PROVIDER: _choice("auto", "content-safety", "offline") = Field(  # type: ignore[valid-type]
        "auto",
        description="`auto`, `content-safety` or `offline` (auto: Content Safety when its endpoint is set, else "
        "the word check alone)",
    )
    VARIA_CAPTION_PROVIDER: _choice("auto", "vision", "chat", "offline") = Field(  # type: ignore[valid-type]
        "auto", description="`auto`, `vision`, `chat` or `offline` (auto: Vision, else chat, else offline)"
    )
    VARIA_COMPOSE_PROVIDER: _choice("auto", "chat", "offline") = Field(  # type: ignore[valid-type]
        "auto", description="`auto`, `chat` or `offline`"
    )
    VARIA_IMAGE_PROVIDER: _choice("auto", "gpt-image", "offline") = Field(  # type: ignore[valid-type]
        "auto", description="`auto`, `gpt-image` or `offline`"
    )
    VARIA_IMAGE_QUALITY: _choice("low", "medium", "high", "auto") = Field(  # type: ignore[valid-type]
        "low", description="GPT-image quality: `low`, `medium`, `high` or `auto` (low is cheapest)"
    )
    VARIA_DEFAULT_PROFILE: _choice("general", "kids") = Field(  # type: ignore[valid-type]
        "general", description="Safety profile when a job names none: `general` or `kids`"
    )
    VARIA_ENFORCED_PROFILE: _choice("", "general", "kids") = Field(  # type: ignore[valid-type]
        "",
        description="Safety profile every job runs under, whatever a request, the page, blob metadata or the CLI "
        "asks: `general` or `kids` (empty: each job chooses). The page hides its profile choice, and a request "
        "naming another profile is refused (see [Enforced profile](#enforced-profile))",
    )
    VARIA_DEFAULT_PRESET: Text = Field(
        "watercolor", description="Preset for blobs with no `prompt` metadata and no preset folder"
    )
    VARIA_DEFAULT_VARIATIONS: int = Field(
        2, ge=1, le=10, description="Variations per job when the job does not say (at most `VARIA_MAX_VARIATIONS`)"
    )
    VARIA_MAX_VARIATIONS: int = Field(
        4, ge=1, le=10, description="Largest number of variations one job may ask for (1-10)"
    )
    VARIA_PREVIEW_IMAGES: int = Field(
        1,
        ge=0,
        le=3,
        description="Partial images GPT-image streams while it draws a job's image (0-3), stored as previews the "
        "status API links; each costs about 100 more output tokens (0: no previews)",
    )
    VARIA_MAX_UPLOAD_MB: int = Field(
        20, ge=1, le=50, description="Largest accepted image in MB (AI Vision's limit is 20)"
    )
    VARIA_SERVICE_TIMEOUT_SECONDS: int = Field(
        120,
        ge=5,
        le=600,
        description="Timeout of one caption or compose call; an image call's timeout follows its model, quality "
        "and size (see [Models](#models))",
    )
    VARIA_IMAGE_REQUESTS_PER_MINUTE: int = Field(
        6,
        ge=1,
        le=100_000,
        description="What the image deployment allows: 3 per capacity unit. Image calls are spaced to it, and "
        "activity concurrency is sized from it (see [Quota](#quota))",
    )
    VARIA_IMAGE_DEPLOYMENTS: Annotated[tuple[ImageDeployment, ...], BeforeValidator(_deployments)] = Field(
        "",
        validate_default=True,
        description='Several image deployments, one quota each (quota is per region): a JSON list of `{"endpoint": '
        '"https://<name>.openai.azure.com", "deployment": "gpt-image-2", "rpm": 6}`, keyless (an `"api_key"` '
        "only for local use). Jobs go to the deployment with free quota first and move to another on a 429 "
        "(empty: the one deployment of `AZURE_OPENAI_ENDPOINT` and `AZURE_OPENAI_IMAGE_DEPLOYMENT`; "
        "see [Quota](#quota))",
    )
    VARIA_IMAGE_QUOTA_UNIT: _choice("request", "image") = Field(  # type: ignore[valid-type]
        "request",
        description="What the image quota counts: `request` (Microsoft's quota table gives GPT-image limits in "
        "requests per minute, so one request of n images counts once, and a quota-bound job asks for its n images "
        "in one request) or `image` (every image counts; each is its own request)",
    )
    VARIA_MAX_JOBS_PER_CALLER: int = Field(
        4,
        ge=0,
        le=1000,
        description="Jobs one caller may have in flight through the HTTP API; one more is answered 429 "
        "`too_many_jobs` until one ends (0: no limit)",
    )
    VARIA_PRICES_USD: Annotated[dict[str, float], BeforeValidator(_prices)] = Field(
        "caption=0.0015,compose=0.004,image=0.01,image.medium=0.04,image.high=0.17,moderation=0.00075",
        validate_default=True,
        description="Price of one call of each kind, for `estimated_cost_usd` in each manifest and the estimate "
        "before a job (moderation: one Content Safety call, 0.00075 when not given; `image.{quality}`: one image "
        "at that quality, `image` when not given)",
    )
    VARIA_STORAGE: _choice("auto", "blob", "local") = Field(  # type: ignore[valid-type]
        "auto",
        json_schema_extra=LOCAL_ONLY,
        description="`auto`, `blob` or `local` (auto: blob when `AzureWebJobsStorage` is set)",
    )
    VARIA_LOCAL_DIR: str = Field(
        ".varia", json_schema_extra=LOCAL_ONLY, description="Folder holding the containers when storage is local"
    )


@dataclass(frozen=True)
class SettingSpec:
    """One setting as the docs, the example file and the Bicep tests see it."""

    name: str
    default: str
    help: str
    local_only: bool = False


def _spec(name: str) -> SettingSpec:
    field = AppSettings.model_fields[name]
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return SettingSpec(name, str(field.default), field.description or "", bool(extra.get("local_only")))


SETTINGS: tuple[SettingSpec, ...] = tuple(_spec(name) for name in AppSettings.model_fields)
SETTING_NAMES: tuple[str, ...] = tuple(spec.name for spec in SETTINGS)


def activity_concurrency(image_rpm: int) -> int:
    """How many activities one Functions instance runs at once: the host's maxConcurrentActivityFunctions.

    Set at deploy time, before any image latency is measured: calls start at their quota slots, so
    about rpm × latency / 60 are in flight, rpm/2 for 30 s images. The templates write it to the
    app setting AzureFunctionsJobHost__extensions__durableTask__maxConcurrentActivityFunctions
    (infra/main.bicep); a job waiting for its slot holds no activity, so Flex adds instances when
    slower images need more. The local runtime sizes itself from the measured latency instead
    (shared/local/cli.py `activity_limits`).
    """
    return max(4, min(32, -(-image_rpm // 2)))


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with `Settings.from_env()`; tests pass a dict."""

    client_id: str
    openai_endpoint: str
    openai_api_key: str
    chat_deployment: str
    chat_model: str
    chat_reasoning_effort: str | None  # resolved: what to send as reasoning_effort, None for nothing
    image_deployment: str
    image_model: str
    vision_endpoint: str
    vision_api_key: str
    content_safety_endpoint: str
    content_safety_api_key: str
    moderation_provider: str  # resolved: content-safety | offline
    caption_provider: str  # resolved: vision | chat | offline
    compose_provider: str  # resolved: chat | offline
    image_provider: str  # resolved: gpt-image | offline
    image_quality: str
    default_profile: str  # the enforced profile when there is one
    enforced_profile: str  # "" when each job may choose
    default_preset: str
    default_variations: int
    max_variations: int
    preview_images: int
    max_upload_bytes: int
    service_timeout_s: float
    image_rpm: int
    image_deployments: tuple[ImageDeployment, ...]  # resolved: at least one when image_provider is gpt-image
    image_quota_unit: str  # request | image
    max_jobs_per_caller: int  # 0: no limit
    prices_usd: dict[str, float]
    storage: str  # resolved: blob | local
    local_dir: str
    storage_connection: str  # AzureWebJobsStorage connection string, or ""
    storage_blob_uri: str  # identity-based AzureWebJobsStorage__blobServiceUri, or ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if environ is None else environ
        raw = {name: source[name] for name in SETTING_NAMES if source.get(name, "").strip()}
        try:
            app = AppSettings.model_validate(raw)
        except ValidationError as exc:
            problems = [_describe(error, raw) for error in exc.errors()]
            raise ConfigError(_report(problems)) from None

        problems = []
        openai, vision = app.AZURE_OPENAI_ENDPOINT, app.AZURE_VISION_ENDPOINT
        caption = app.VARIA_CAPTION_PROVIDER
        if caption == "auto":
            caption = "vision" if vision else "chat" if openai else "offline"
        compose = app.VARIA_COMPOSE_PROVIDER
        if compose == "auto":
            compose = "chat" if openai else "offline"
        image = app.VARIA_IMAGE_PROVIDER
        if image == "auto":
            image = "gpt-image" if openai or app.VARIA_IMAGE_DEPLOYMENTS else "offline"
        moderation = app.VARIA_MODERATION_PROVIDER
        if moderation == "auto":
            moderation = "content-safety" if app.AZURE_CONTENT_SAFETY_ENDPOINT else "offline"
        if moderation == "content-safety" and not app.AZURE_CONTENT_SAFETY_ENDPOINT:
            problems.append("VARIA_MODERATION_PROVIDER=content-safety needs AZURE_CONTENT_SAFETY_ENDPOINT")
        if caption == "vision" and not vision:
            problems.append("VARIA_CAPTION_PROVIDER=vision needs AZURE_VISION_ENDPOINT")
        for name, value in (("VARIA_CAPTION_PROVIDER", caption), ("VARIA_COMPOSE_PROVIDER", compose)):
            if value == "chat" and not openai:
                problems.append(f"{name}=chat needs AZURE_OPENAI_ENDPOINT")
        deployments = app.VARIA_IMAGE_DEPLOYMENTS
        if image == "gpt-image" and not openai and not deployments:
            problems.append("VARIA_IMAGE_PROVIDER=gpt-image needs AZURE_OPENAI_ENDPOINT or VARIA_IMAGE_DEPLOYMENTS")
        if image == "gpt-image" and not deployments:
            deployments = (
                ImageDeployment(
                    openai,
                    app.AZURE_OPENAI_IMAGE_DEPLOYMENT,
                    app.VARIA_IMAGE_REQUESTS_PER_MINUTE,
                    app.AZURE_OPENAI_API_KEY,
                ),
            )
        effort = app.VARIA_CHAT_REASONING_EFFORT
        if effort not in ("auto", "off") and known_non_reasoning_model(app.AZURE_OPENAI_CHAT_MODEL):
            problems.append(
                f"VARIA_CHAT_REASONING_EFFORT={effort} is refused by AZURE_OPENAI_CHAT_MODEL="
                f"{app.AZURE_OPENAI_CHAT_MODEL}, which is not a reasoning model: use auto or off"
            )
        if app.VARIA_DEFAULT_VARIATIONS > app.VARIA_MAX_VARIATIONS:
            problems.append(
                f"VARIA_DEFAULT_VARIATIONS={app.VARIA_DEFAULT_VARIATIONS} is more than "
                f"VARIA_MAX_VARIATIONS={app.VARIA_MAX_VARIATIONS}"
            )

        connection = source.get("AzureWebJobsStorage", "").strip()
        blob_uri = source.get("AzureWebJobsStorage__blobServiceUri", "").strip()
        account = source.get("AzureWebJobsStorage__accountName", "").strip()
        if not blob_uri and account:
            blob_uri = f"https://{account}.blob.core.windows.net"
        storage = app.VARIA_STORAGE
        if storage == "auto":
            storage = "blob" if connection or blob_uri else "local"
        if storage == "blob" and not (connection or blob_uri):
            problems.append(
                "VARIA_STORAGE=blob needs AzureWebJobsStorage (a connection string, e.g. UseDevelopmentStorage=true "
                "for Azurite) or AzureWebJobsStorage__blobServiceUri / __accountName for keyless access"
            )
        if problems:
            raise ConfigError(_report(problems))

        return cls(
            client_id=app.AZURE_CLIENT_ID,
            openai_endpoint=openai,
            openai_api_key=app.AZURE_OPENAI_API_KEY,
            chat_deployment=app.AZURE_OPENAI_CHAT_DEPLOYMENT,
            chat_model=app.AZURE_OPENAI_CHAT_MODEL,
            chat_reasoning_effort=reasoning_effort(app.AZURE_OPENAI_CHAT_MODEL, effort),
            image_deployment=app.AZURE_OPENAI_IMAGE_DEPLOYMENT,
            image_model=app.AZURE_OPENAI_IMAGE_MODEL,
            vision_endpoint=vision,
            vision_api_key=app.AZURE_VISION_API_KEY,
            content_safety_endpoint=app.AZURE_CONTENT_SAFETY_ENDPOINT,
            content_safety_api_key=app.AZURE_CONTENT_SAFETY_API_KEY,
            moderation_provider=moderation,
            caption_provider=caption,
            compose_provider=compose,
            image_provider=image,
            image_quality=app.VARIA_IMAGE_QUALITY,
            default_profile=app.VARIA_ENFORCED_PROFILE or app.VARIA_DEFAULT_PROFILE,
            enforced_profile=app.VARIA_ENFORCED_PROFILE,
            default_preset=app.VARIA_DEFAULT_PRESET,
            default_variations=app.VARIA_DEFAULT_VARIATIONS,
            max_variations=app.VARIA_MAX_VARIATIONS,
            preview_images=app.VARIA_PREVIEW_IMAGES,
            max_upload_bytes=app.VARIA_MAX_UPLOAD_MB * 1024 * 1024,
            service_timeout_s=float(app.VARIA_SERVICE_TIMEOUT_SECONDS),
            image_rpm=app.VARIA_IMAGE_REQUESTS_PER_MINUTE,
            image_deployments=deployments,
            image_quota_unit=app.VARIA_IMAGE_QUOTA_UNIT,
            max_jobs_per_caller=app.VARIA_MAX_JOBS_PER_CALLER,
            prices_usd=dict(app.VARIA_PRICES_USD),
            storage=storage,
            local_dir=app.VARIA_LOCAL_DIR,
            storage_connection=connection,
            storage_blob_uri=blob_uri,
        )


def _describe(error: Any, raw: Mapping[str, str]) -> str:
    name = str(error["loc"][0]) if error.get("loc") else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if name in raw:
        return f"{name}={raw[name]!r}: {message}"
    return f"{name}: {message}"


def _report(problems: list[str]) -> str:
    listed = "; ".join(problems)
    where = "the app settings in Azure, local.settings.json under func start, or the environment"
    return (
        f"{len(problems)} bad setting{'s' if len(problems) > 1 else ''}: {listed}. Fix them in {where}, then restart."
    )


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()


# --- The generated docs: the README's settings table and local.settings.json.example ----------

README_START = "<!-- settings table: generated by `python -m shared.config --write` -->"
README_END = "<!-- end of settings table -->"
# Set for `func start` with Azurite; the host reads them, not Varia's code.
HOST_LOCAL_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "AzureWebJobsFeatureFlags": "EnableWorkerIndexing",
    "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
    # Empty: no telemetry. An Application Insights connection string turns it on (README, Monitoring);
    # the worker then hands each invocation the host's trace context, as in Azure.
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "",
    "PYTHON_ENABLE_OPENTELEMETRY": "true",
}


def settings_table() -> str:
    """The README's settings table, one row per setting."""
    rows = ["| setting | default | what it does |", "|---|---|---|"]
    for spec in SETTINGS:
        default = f"`{spec.default}`" if spec.default else "(empty)"
        note = " — local use" if spec.local_only and "local use" not in spec.help else ""
        rows.append(f"| `{spec.name}` | {default} | {spec.help}{note} |")
    return "\n".join(rows)


def local_settings_example() -> str:
    """local.settings.json.example: the host's local settings, then every setting with its default."""
    values = {**HOST_LOCAL_SETTINGS, **{spec.name: spec.default for spec in SETTINGS}}
    return json.dumps({"IsEncrypted": False, "Values": values}, indent=2) + "\n"


def readme_with_table(readme: str) -> str:
    start, end = readme.index(README_START), readme.index(README_END)
    return readme[: start + len(README_START)] + "\n" + settings_table() + "\n" + readme[end:]


def write_docs(root: Path) -> None:
    readme = root / "README.md"
    readme.write_text(readme_with_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
    (root / "local.settings.json.example").write_text(local_settings_example(), encoding="utf-8")


def main(argv: list[str] | None = None, write: Callable[[Path], None] = write_docs) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--write"]:
        print(
            "usage: python -m shared.config --write   (regenerates README.md's settings table and "
            "local.settings.json.example from AppSettings)",
            file=sys.stderr,
        )
        return 2
    write(Path(__file__).resolve().parent.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
