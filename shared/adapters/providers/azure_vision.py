"""Azure AI Vision Image Analysis 4.0 captions (`azure-ai-vision-imageanalysis`).

Image Analysis 4.0 retires in 2028 and captions only exist in some regions: that is why
captioning sits behind the `Captioner` interface, with the chat model as the fallback.
"""

from __future__ import annotations

from typing import Any

from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from shared.adapters.providers.base import CaptionResult, PermanentServiceError, TransientServiceError


class VisionCaptioner:
    name = "azure-ai-vision"
    paid = True

    def __init__(self, endpoint: str, credential: Any, timeout_s: float, retry_total: int = 2) -> None:
        self._client = ImageAnalysisClient(
            endpoint=endpoint,
            credential=credential,
            retry_total=retry_total,
            connection_timeout=min(timeout_s, 30),
            read_timeout=timeout_s,
        )

    def caption(self, png: bytes) -> CaptionResult:
        try:
            result = self._client.analyze(
                image_data=png,
                visual_features=[VisualFeatures.CAPTION, VisualFeatures.TAGS],
                gender_neutral_caption=True,
            )
        except HttpResponseError as exc:
            raise classify(exc) from exc
        except (ServiceRequestTimeoutError, ServiceResponseTimeoutError) as exc:
            raise TransientServiceError("AI Vision did not answer in time.", "service_timeout") from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientServiceError(f"AI Vision could not be reached ({type(exc).__name__}).") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientServiceError(
                f"AI Vision answered with a body Varia could not read ({type(exc).__name__}).", "service_incomplete"
            ) from exc
        if result.caption is None or not result.caption.text:
            raise PermanentServiceError(
                "AI Vision returned no caption: this region may not offer captions. An admin should use a region "
                "with captions (e.g. East US, West Europe) or set VARIA_CAPTION_PROVIDER=chat.",
                billed=True,
            )
        tags = [t.name for t in (result.tags.list if result.tags else [])][:10]
        return CaptionResult(text=result.caption.text, tags=tags)


def classify(exc: HttpResponseError) -> PermanentServiceError | TransientServiceError:
    """What an AI Vision error answer means, with its code and the next step."""
    status = exc.status_code or 0
    code = str(getattr(exc.error, "code", "") or "")
    inner = getattr(exc.error, "innererror", None)
    if isinstance(inner, dict) and inner.get("code"):
        code = str(inner["code"])  # InvalidRequest says little; the inner code says what is wrong
    message = str(getattr(exc.error, "message", "") or exc.reason or "")
    if status == 401:
        return PermanentServiceError(
            "AI Vision refused our credentials (HTTP 401). An admin should check AZURE_VISION_ENDPOINT and the app "
            "identity's 'Cognitive Services User' role (or AZURE_VISION_API_KEY locally).",
            "service_auth",
        )
    if status == 403:
        return PermanentServiceError(
            f"AI Vision denied access (HTTP 403: {message}). An admin should check the app identity's "
            "'Cognitive Services User' role and the resource's network rules.",
            "service_auth",
        )
    if status == 404:
        return PermanentServiceError(
            "AI Vision has no Image Analysis API at AZURE_VISION_ENDPOINT (HTTP 404). An admin should check the "
            "endpoint.",
            "service_config",
        )
    if status == 429:
        retry_after = None
        headers: Any = getattr(exc.response, "headers", None) or {}
        try:
            retry_after = float(headers.get("Retry-After", ""))
        except ValueError:
            pass
        return TransientServiceError(
            "AI Vision is at its rate limit (HTTP 429).", "quota_exhausted", retry_after=retry_after
        )
    if status >= 500:
        return TransientServiceError(f"AI Vision failed (HTTP {status}).")
    if status == 400 and code in ("InvalidImageSize", "InvalidImageFormat", "NotSupportedImage", "InvalidImage"):
        return PermanentServiceError(f"AI Vision could not read the image ({code}: {message})", "image_invalid")
    return PermanentServiceError(
        f"AI Vision rejected the request (HTTP {status}{f' {code}' if code else ''}: {message}). An admin should "
        "check the Vision resource and its region.",
        "service_config",
    )
