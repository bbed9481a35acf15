"""Azure AI Content Safety (`azure-ai-contentsafety`): harm ratings of texts and images, and Prompt Shields.

- `text:analyze` and `image:analyze` (API 2023-10-01, the SDK's own) rate Hate, SelfHarm, Sexual
  and Violence at 0, 2, 4 or 6; the profile's thresholds (moderation.py) turn them into a verdict.
- `text:shieldPrompt` (API 2024-09-01, not in SDK 1.0) says whether the request (a user prompt
  attack) or the caption (a document attack: text in the picture giving the composer orders)
  tries to steer the model. It goes through the same client's `send_request`, so it shares its
  endpoint, credential, timeouts and retry policy.

Keyless with the app's identity (role "Cognitive Services User"), or an API key for local use.
The SDK makes one attempt (`retry_total=0`): the spend budget decides every second attempt.
"""

from __future__ import annotations

import io
from typing import Any

from azure.ai.contentsafety import ContentSafetyClient
from azure.ai.contentsafety.models import AnalyzeImageOptions, AnalyzeTextOptions, ImageData
from azure.core.rest import HttpRequest
from PIL import Image

from shared.adapters.providers.azure_core import AzureService, call, client_options
from shared.adapters.providers.base import (
    ModerationVerdict,
    TransientServiceError,
)
from shared.adapters.providers.moderation import CATEGORIES, judge

SHIELD_API_VERSION = "2024-09-01"
TEXT_LIMIT = 10_000  # characters, for text:analyze and for Prompt Shields (prompt, and documents together)
IMAGE_LIMIT_BYTES = 4 * 1024 * 1024
IMAGE_EDGES = (50, 2048)  # the SDK's documented bounds (the service accepts up to 7,200 now)
SERVICE = "Azure AI Content Safety"
CONTENT_SAFETY = AzureService(
    name=SERVICE,
    endpoint_setting="AZURE_CONTENT_SAFETY_ENDPOINT",
    key_setting="AZURE_CONTENT_SAFETY_API_KEY",
    missing_api="no such API at AZURE_CONTENT_SAFETY_ENDPOINT (its region may not offer Prompt Shields)",
    check="the Content Safety resource and its API versions",
    timeouts_billed=True,
)


class ContentSafetyModerator:
    name = "azure-ai-content-safety"
    paid = True

    def __init__(self, endpoint: str, credential: Any, timeout_s: float, retry_total: int = 0) -> None:
        self._client = ContentSafetyClient(
            endpoint=endpoint, credential=credential, **client_options(timeout_s, retry_total)
        )

    def check_text(self, text: str, profile: str, *, what: str) -> ModerationVerdict:
        options = AnalyzeTextOptions(
            text=text[:TEXT_LIMIT], categories=list(CATEGORIES), output_type="FourSeverityLevels"
        )
        result = call(CONTENT_SAFETY, lambda: self._client.analyze_text(options))
        return judge(_severities(result.get("categoriesAnalysis")), profile, what, self.name)

    def check_image(self, image: bytes, profile: str, *, what: str) -> ModerationVerdict:
        options = AnalyzeImageOptions(image=ImageData(content=fit_image(image)), categories=list(CATEGORIES))
        result = call(CONTENT_SAFETY, lambda: self._client.analyze_image(options))
        return judge(_severities(result.get("categoriesAnalysis")), profile, what, self.name)

    def shield(self, user_prompt: str, documents: list[str]) -> ModerationVerdict:
        budget = TEXT_LIMIT
        kept = []
        for document in documents:
            kept.append(document[:budget])
            budget = max(0, budget - len(kept[-1]))
        request = HttpRequest(
            "POST",
            "/text:shieldPrompt",
            params={"api-version": SHIELD_API_VERSION},
            json={"userPrompt": user_prompt[:TEXT_LIMIT], "documents": kept},
        )

        def send() -> Any:
            response = self._client.send_request(request)
            response.raise_for_status()
            return response.json()

        body = call(CONTENT_SAFETY, send)
        try:
            on_prompt = body["userPromptAnalysis"]["attackDetected"]
            on_documents = [d["attackDetected"] for d in body["documentsAnalysis"]]
        except (KeyError, TypeError) as exc:
            raise _incomplete(f"a Prompt Shields answer without {exc}") from exc
        if not isinstance(on_prompt, bool) or len(on_documents) != len(kept):
            raise _incomplete("a Prompt Shields answer Varia could not read")
        attacks = {"request": on_prompt, "caption": any(on_documents)}
        if on_prompt:
            reason = (
                f"{SERVICE}'s Prompt Shields found an attempt in the request to give the AI orders of its own "
                "(a prompt injection). Describe the change you want to the picture instead."
            )
            return ModerationVerdict("refused", reason, self.name, attacks=attacks)
        if any(on_documents):
            reason = (
                f"{SERVICE}'s Prompt Shields found instructions to the AI in the image (as captioned), such as "
                "written text telling it what to do. Send another image."
            )
            return ModerationVerdict("refused", reason, self.name, attacks=attacks)
        return ModerationVerdict(
            "allowed", "Prompt Shields found no injection in the request or the caption.", self.name, attacks=attacks
        )


def fit_image(data: bytes) -> bytes:
    """The image within the API's bounds: 50 to 2048 px a side, under 4 MB (re-encoded only when needed)."""
    with Image.open(io.BytesIO(data)) as img:
        low, high = IMAGE_EDGES
        width, height = img.size
        if low <= min(width, height) and max(width, height) <= high and len(data) <= IMAGE_LIMIT_BYTES:
            return data
        scale = min(high / max(width, height), 1.0)
        scale = max(scale, low / min(width, height))
        rgb = img.convert("RGB").resize((max(low, round(width * scale)), max(low, round(height * scale))))
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=90)
    return out.getvalue()


def _severities(analysis: Any) -> dict[str, int]:
    """Severity by category, every requested category present: a partial rating is no rating."""
    try:
        found = {str(item["category"]): int(item["severity"] or 0) for item in analysis}
    except (KeyError, TypeError, ValueError) as exc:
        raise _incomplete("a rating Varia could not read") from exc
    missing = [name for name in CATEGORIES if name not in found]
    if missing:
        raise _incomplete(f"no rating for {', '.join(missing)}")
    return {name: found[name] for name in CATEGORIES}


def _incomplete(what: str) -> TransientServiceError:
    return TransientServiceError(f"{SERVICE} answered with {what}.", "service_incomplete", billed=True)
