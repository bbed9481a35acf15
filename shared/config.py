"""Varia's settings: every environment variable the code reads, validated once, on first use.

The table `SETTINGS` is the contract: `local.settings.json.example`, the README and the Bicep
app settings all list the same names. Nothing here runs at import time; `get_settings()`
reads the environment once per process and caches the result.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting and what to do."""


@dataclass(frozen=True)
class SettingSpec:
    name: str
    default: str
    help: str
    local_only: bool = False  # only meaningful on a laptop (keys, local folders): never an Azure app setting


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("AZURE_CLIENT_ID", "", "Client id of the user-assigned managed identity (empty: default identity)"),
    SettingSpec("AZURE_OPENAI_ENDPOINT", "", "Azure OpenAI endpoint, https://<name>.openai.azure.com (empty: offline)"),
    SettingSpec(
        "AZURE_OPENAI_API_KEY", "", "Azure OpenAI key for local use only; empty means keyless (Entra ID)", True
    ),
    SettingSpec("AZURE_OPENAI_CHAT_DEPLOYMENT", "gpt-4.1-mini", "Chat deployment that composes prompts"),
    SettingSpec("AZURE_OPENAI_IMAGE_DEPLOYMENT", "gpt-image-1-mini", "GPT-image deployment that draws the variations"),
    SettingSpec(
        "AZURE_VISION_ENDPOINT", "", "Azure AI Vision endpoint for captions (empty: caption with chat or offline)"
    ),
    SettingSpec("AZURE_VISION_API_KEY", "", "Azure AI Vision key for local use only; empty means keyless", True),
    SettingSpec("VARIA_CAPTION_PROVIDER", "auto", "auto, vision, chat or offline (auto: the best one configured)"),
    SettingSpec("VARIA_COMPOSE_PROVIDER", "auto", "auto, chat or offline"),
    SettingSpec("VARIA_IMAGE_PROVIDER", "auto", "auto, gpt-image or offline"),
    SettingSpec("VARIA_IMAGE_QUALITY", "low", "GPT-image quality: low, medium, high or auto (low is cheapest)"),
    SettingSpec("VARIA_DEFAULT_PROFILE", "general", "Safety profile when a job names none: general or kids"),
    SettingSpec(
        "VARIA_DEFAULT_PRESET", "watercolor", "Preset used for blobs with no prompt metadata and no preset folder"
    ),
    SettingSpec("VARIA_DEFAULT_VARIATIONS", "2", "Variations per job when the job does not say"),
    SettingSpec("VARIA_MAX_VARIATIONS", "4", "Largest number of variations one job may ask for (1-10)"),
    SettingSpec("VARIA_MAX_UPLOAD_MB", "20", "Largest accepted image, in MB (Vision accepts up to 20)"),
    SettingSpec("VARIA_SERVICE_TIMEOUT_SECONDS", "120", "Timeout of one call to an AI service"),
    SettingSpec(
        "VARIA_IMAGE_REQUESTS_PER_MINUTE",
        "6",
        "Image calls per minute the image deployment allows (3 per capacity unit); paces calls and sizes concurrency",
    ),
    SettingSpec(
        "VARIA_PRICES_USD",
        "caption=0.0015,compose=0.001,image=0.006",
        "Price of one call, for the cost estimate in each manifest (defaults: Vision S0, gpt-4.1-mini, "
        "gpt-image-1-mini low)",
    ),
    SettingSpec("VARIA_STORAGE", "auto", "auto, blob or local: auto uses blob when AzureWebJobsStorage is set", True),
    SettingSpec("VARIA_LOCAL_DIR", ".varia", "Folder that holds the containers when VARIA_STORAGE is local", True),
)

SETTING_NAMES: tuple[str, ...] = tuple(spec.name for spec in SETTINGS)


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = env[name].strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name}={env[name]!r} is not valid; use one of: {', '.join(allowed)}")
    return value


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    raw = env[name].strip()
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range; use {low} to {high}")
    return value


def _prices(env: Mapping[str, str], name: str) -> dict[str, float]:
    prices: dict[str, float] = {}
    for item in env[name].split(","):
        key, _, value = item.partition("=")
        try:
            prices[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not 'name=price'") from None
    missing = {"caption", "compose", "image"} - set(prices)
    if missing:
        raise ConfigError(f"{name} needs a price for {', '.join(sorted(missing))}")
    return prices


def activity_concurrency(image_rpm: int) -> int:
    """How many activities may run at once: enough to keep the image quota busy, no more.

    Image calls take 10-60 s; with calls paced to `image_rpm`, about rpm/2 of them are in flight
    when a call takes 30 s. Other activities are short. The same rule sizes the local runtime's
    pool and, through the app setting AzureFunctionsJobHost__extensions__durableTask__
    maxConcurrentActivityFunctions, the Functions host (see infra/main.bicep).
    """
    return max(4, min(32, -(-image_rpm // 2)))


def _endpoint(env: Mapping[str, str], name: str) -> str:
    value = env[name].strip().rstrip("/")
    if value and not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ConfigError(f"{name}={value!r} must be an https:// endpoint")
    return value


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with `Settings.from_env()`; tests pass a dict."""

    client_id: str
    openai_endpoint: str
    openai_api_key: str
    chat_deployment: str
    image_deployment: str
    vision_endpoint: str
    vision_api_key: str
    caption_provider: str  # resolved: vision | chat | offline
    compose_provider: str  # resolved: chat | offline
    image_provider: str  # resolved: gpt-image | offline
    image_quality: str
    default_profile: str
    default_preset: str
    default_variations: int
    max_variations: int
    max_upload_bytes: int
    service_timeout_s: float
    image_rpm: int
    prices_usd: dict[str, float]
    storage: str  # resolved: blob | local
    local_dir: str
    storage_connection: str  # AzureWebJobsStorage connection string, or ""
    storage_blob_uri: str  # identity-based AzureWebJobsStorage__blobServiceUri, or ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if environ is None else environ
        env = {spec.name: source.get(spec.name, "") or spec.default for spec in SETTINGS}
        openai_endpoint = _endpoint(env, "AZURE_OPENAI_ENDPOINT")
        vision_endpoint = _endpoint(env, "AZURE_VISION_ENDPOINT")

        caption = _choice(env, "VARIA_CAPTION_PROVIDER", ("auto", "vision", "chat", "offline"))
        if caption == "auto":
            caption = "vision" if vision_endpoint else "chat" if openai_endpoint else "offline"
        compose = _choice(env, "VARIA_COMPOSE_PROVIDER", ("auto", "chat", "offline"))
        if compose == "auto":
            compose = "chat" if openai_endpoint else "offline"
        image = _choice(env, "VARIA_IMAGE_PROVIDER", ("auto", "gpt-image", "offline"))
        if image == "auto":
            image = "gpt-image" if openai_endpoint else "offline"
        if caption == "vision" and not vision_endpoint:
            raise ConfigError("VARIA_CAPTION_PROVIDER=vision needs AZURE_VISION_ENDPOINT")
        for name, value in (("VARIA_CAPTION_PROVIDER", caption), ("VARIA_COMPOSE_PROVIDER", compose)):
            if value == "chat" and not openai_endpoint:
                raise ConfigError(f"{name}=chat needs AZURE_OPENAI_ENDPOINT")
        if image == "gpt-image" and not openai_endpoint:
            raise ConfigError("VARIA_IMAGE_PROVIDER=gpt-image needs AZURE_OPENAI_ENDPOINT")

        connection = source.get("AzureWebJobsStorage", "").strip()
        blob_uri = source.get("AzureWebJobsStorage__blobServiceUri", "").strip()
        account = source.get("AzureWebJobsStorage__accountName", "").strip()
        if not blob_uri and account:
            blob_uri = f"https://{account}.blob.core.windows.net"
        storage = _choice(env, "VARIA_STORAGE", ("auto", "blob", "local"))
        if storage == "auto":
            storage = "blob" if connection or blob_uri else "local"
        if storage == "blob" and not (connection or blob_uri):
            raise ConfigError(
                "VARIA_STORAGE=blob needs AzureWebJobsStorage (a connection string, e.g. UseDevelopmentStorage=true "
                "for Azurite) or AzureWebJobsStorage__blobServiceUri / __accountName for keyless access"
            )

        max_variations = _int(env, "VARIA_MAX_VARIATIONS", 1, 10)
        default_profile = _choice(env, "VARIA_DEFAULT_PROFILE", ("general", "kids"))
        return cls(
            client_id=env["AZURE_CLIENT_ID"].strip(),
            openai_endpoint=openai_endpoint,
            openai_api_key=env["AZURE_OPENAI_API_KEY"].strip(),
            chat_deployment=env["AZURE_OPENAI_CHAT_DEPLOYMENT"].strip(),
            image_deployment=env["AZURE_OPENAI_IMAGE_DEPLOYMENT"].strip(),
            vision_endpoint=vision_endpoint,
            vision_api_key=env["AZURE_VISION_API_KEY"].strip(),
            caption_provider=caption,
            compose_provider=compose,
            image_provider=image,
            image_quality=_choice(env, "VARIA_IMAGE_QUALITY", ("low", "medium", "high", "auto")),
            default_profile=default_profile,
            default_preset=env["VARIA_DEFAULT_PRESET"].strip(),
            default_variations=_int(env, "VARIA_DEFAULT_VARIATIONS", 1, max_variations),
            max_variations=max_variations,
            max_upload_bytes=_int(env, "VARIA_MAX_UPLOAD_MB", 1, 50) * 1024 * 1024,
            service_timeout_s=float(_int(env, "VARIA_SERVICE_TIMEOUT_SECONDS", 5, 600)),
            image_rpm=_int(env, "VARIA_IMAGE_REQUESTS_PER_MINUTE", 1, 100_000),
            prices_usd=_prices(env, "VARIA_PRICES_USD"),
            storage=storage,
            local_dir=env["VARIA_LOCAL_DIR"],
            storage_connection=connection,
            storage_blob_uri=blob_uri,
        )


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()
