"""Provider factory: builds the caption, compose, image and moderation providers the settings ask for.

Azure SDKs are imported inside the branches that need them, so an offline run never loads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.adapters.providers.base import Captioner, Composer, ImageGenerator, Moderator
from shared.adapters.providers.moderation import OfflineModerator
from shared.adapters.providers.offline import OfflineCaptioner, OfflineComposer, OfflineStylizer
from shared.config import Settings

if TYPE_CHECKING:
    from openai import OpenAI

CredentialFactory = Callable[[], Any]


@dataclass(frozen=True)
class Providers:
    captioner: Captioner
    composer: Composer
    generator: ImageGenerator
    moderator: Moderator = field(default_factory=OfflineModerator)

    def names(self) -> dict[str, str]:
        return {"caption": self.captioner.name, "compose": self.composer.name, "image": self.generator.name}

    def paid(self) -> dict[str, bool]:
        """Which steps' providers bill a call: the `paid` argument of `estimate` (shared/core/lineage.py)."""
        return {
            "caption": self.captioner.paid,
            "compose": self.composer.paid,
            "image": self.generator.paid,
            "moderation": self.moderator.paid,
        }


def default_credential(settings: Settings) -> Any:
    """Keyless auth: managed identity in Azure (AZURE_CLIENT_ID), developer sign-in locally."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.client_id or None)


def build_providers(settings: Settings, credential_factory: CredentialFactory | None = None) -> Providers:
    """Providers for these settings; `credential_factory` is called at most once, and only if a key is missing."""
    credential: list[Any] = []

    def token_credential() -> Any:
        if not credential:
            credential.append((credential_factory or (lambda: default_credential(settings)))())
        return credential[0]

    clients: list[OpenAI] = []

    def openai_client() -> OpenAI:
        """One Azure OpenAI client for chat and images, made on first need."""
        if not clients:
            from shared.adapters.providers.azure_openai import COGNITIVE_SERVICES_SCOPE, make_client

            api_key: Any = settings.openai_api_key
            if not api_key:
                from azure.identity import get_bearer_token_provider

                api_key = get_bearer_token_provider(token_credential(), COGNITIVE_SERVICES_SCOPE)
            # No retries in the SDK: the spend budget (shared/core/budget.py) decides every second attempt.
            clients.append(make_client(settings.openai_endpoint, api_key, settings.service_timeout_s, max_retries=0))
        return clients[0]

    def key_or_token(api_key: str) -> Any:
        """An API key (local use), else the app's identity, shared by every keyless client."""
        from azure.core.credentials import AzureKeyCredential

        return AzureKeyCredential(api_key) if api_key else token_credential()

    captioner: Captioner
    if settings.caption_provider == "vision":
        from shared.adapters.providers.azure_vision import VisionCaptioner

        vision_credential = key_or_token(settings.vision_api_key)
        captioner = VisionCaptioner(
            settings.vision_endpoint, vision_credential, settings.service_timeout_s, retry_total=0
        )
    elif settings.caption_provider == "chat":
        from shared.adapters.providers.azure_openai import ChatCaptioner

        captioner = ChatCaptioner(
            openai_client(), settings.chat_deployment, settings.chat_model, settings.chat_reasoning_effort
        )
    else:
        captioner = OfflineCaptioner()

    composer: Composer
    if settings.compose_provider == "chat":
        from shared.adapters.providers.azure_openai import ChatComposer

        composer = ChatComposer(
            openai_client(), settings.chat_deployment, settings.chat_model, settings.chat_reasoning_effort
        )
    else:
        composer = OfflineComposer()

    generator: ImageGenerator
    if settings.image_provider == "gpt-image":
        from shared.adapters.providers.azure_openai import COGNITIVE_SERVICES_SCOPE, GptImageGenerator, make_client

        deployments: dict[str, tuple[OpenAI, str]] = {}
        for d in settings.image_deployments:
            if d.endpoint == settings.openai_endpoint and d.api_key == settings.openai_api_key:
                client = openai_client()  # the chat client's endpoint: one connection pool for both
            else:
                api_key: Any = d.api_key
                if not api_key:
                    from azure.identity import get_bearer_token_provider

                    api_key = get_bearer_token_provider(token_credential(), COGNITIVE_SERVICES_SCOPE)
                client = make_client(d.endpoint, api_key, settings.service_timeout_s, max_retries=0)
            deployments[d.key] = (client, d.deployment)
        generator = GptImageGenerator(deployments, settings.image_quality, settings.image_model)
    else:
        generator = OfflineStylizer()
    moderator: Moderator
    if settings.moderation_provider == "content-safety":
        from shared.adapters.providers.content_safety import ContentSafetyModerator

        moderator = ContentSafetyModerator(
            settings.content_safety_endpoint,
            key_or_token(settings.content_safety_api_key),
            settings.service_timeout_s,
            retry_total=0,  # the spend budget decides every second attempt
        )
    else:
        moderator = OfflineModerator()
    return Providers(captioner, composer, generator, moderator)
