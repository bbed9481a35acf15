"""Azure AI Vision Image Analysis 4.0 captions (`azure-ai-vision-imageanalysis`).

Image Analysis 4.0 retires in 2028 and captions only exist in some regions: that is why
captioning sits behind the `Captioner` interface, with the chat model as the fallback.
"""

from __future__ import annotations

from typing import Any

from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures

from shared.adapters.providers.azure_core import AzureService, call, client_options
from shared.adapters.providers.base import CaptionResult, PermanentServiceError

VISION = AzureService(
    name="AI Vision",
    endpoint_setting="AZURE_VISION_ENDPOINT",
    key_setting="AZURE_VISION_API_KEY",
    missing_api="no Image Analysis API at AZURE_VISION_ENDPOINT",
    check="the Vision resource and its region",
    image_codes=frozenset({"InvalidImageSize", "InvalidImageFormat", "NotSupportedImage", "InvalidImage"}),
)


class VisionCaptioner:
    name = "azure-ai-vision"
    paid = True

    def __init__(self, endpoint: str, credential: Any, timeout_s: float, retry_total: int = 2) -> None:
        self._client = ImageAnalysisClient(
            endpoint=endpoint, credential=credential, **client_options(timeout_s, retry_total)
        )

    def caption(self, image: bytes) -> CaptionResult:
        # The prepared image, JPEG or PNG: the SDK sends it as octet-stream and the service reads the format.
        result = call(
            VISION,
            lambda: self._client.analyze(
                image_data=image,
                visual_features=[VisualFeatures.CAPTION, VisualFeatures.TAGS],
                gender_neutral_caption=True,
            ),
        )
        if result.caption is None or not result.caption.text:
            raise PermanentServiceError(
                "AI Vision returned no caption: this region may not offer captions. An admin should use a region "
                "with captions (e.g. East US, West Europe) or set VARIA_CAPTION_PROVIDER=chat.",
                billed=True,
            )
        tags = [t.name for t in (result.tags.list if result.tags else [])][:10]
        return CaptionResult(text=result.caption.text, tags=tags)
