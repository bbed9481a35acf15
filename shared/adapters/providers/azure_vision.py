"""Azure AI Vision Image Analysis 4.0 captions (`azure-ai-vision-imageanalysis`).

Image Analysis 4.0 retires in 2028 and captions only exist in some regions: that is why
captioning sits behind the `Captioner` interface, with the chat model as the fallback.
"""

from __future__ import annotations

from typing import Any

from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

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
            status = exc.status_code or 0
            if status in (401, 403):
                raise PermanentServiceError(
                    f"AI Vision refused our credentials (HTTP {status}). Check AZURE_VISION_ENDPOINT and the app "
                    "identity's 'Cognitive Services User' role (or AZURE_VISION_API_KEY locally)."
                ) from exc
            if status == 429 or status >= 500:
                raise TransientServiceError(f"AI Vision answered HTTP {status}; the job will retry.") from exc
            raise PermanentServiceError(
                f"AI Vision could not analyse the image (HTTP {status}): {exc.message}"
            ) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientServiceError(f"AI Vision could not be reached: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientServiceError(f"AI Vision answered with a malformed body: {exc}") from exc
        if result.caption is None or not result.caption.text:
            raise PermanentServiceError(
                "AI Vision returned no caption: this region may not offer captions. Use a region with captions "
                "(e.g. East US, West Europe) or set VARIA_CAPTION_PROVIDER=chat."
            )
        tags = [t.name for t in (result.tags.list if result.tags else [])][:10]
        return CaptionResult(text=result.caption.text, tags=tags)
