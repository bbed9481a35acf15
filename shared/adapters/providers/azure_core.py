"""What the Azure AI services reached through azure-core (AI Vision, Content Safety) answer, classified once.

Both SDKs raise azure-core's exceptions; `call` turns each into Varia's refused / permanent /
transient errors with a code, and `client_options` gives both clients the same timeouts and
retries (none: the spend budget decides every second attempt).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.exceptions import (
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from shared.adapters.providers.base import PermanentServiceError, TransientServiceError

T = TypeVar("T")


@dataclass(frozen=True)
class AzureService:
    """How to name one service in messages, and what is particular about it."""

    name: str  # "AI Vision"
    endpoint_setting: str  # AZURE_VISION_ENDPOINT
    key_setting: str  # its local-only API key setting
    missing_api: str  # what a 404 means, e.g. "no Image Analysis API at AZURE_VISION_ENDPOINT"
    check: str  # what an admin checks when a request is refused, e.g. "the Vision resource and its region"
    image_codes: frozenset[str] = frozenset()  # 400 codes that mean the image itself is unreadable
    timeouts_billed: bool = False  # whether a call that timed out is likely billed anyway


def client_options(timeout_s: float, retry_total: int) -> dict[str, Any]:
    return {"retry_total": retry_total, "connection_timeout": min(timeout_s, 30), "read_timeout": timeout_s}


def call(service: AzureService, attempt: Callable[[], T]) -> T:
    """The SDK call's result, or the classified error of what the service answered instead."""
    try:
        return attempt()
    except DecodeError as exc:  # a 200 whose body is not JSON: produced (and billed) by the service
        raise _unreadable(service, exc, billed=True) from exc
    except HttpResponseError as exc:
        raise classify(service, exc) from exc
    except (ServiceRequestTimeoutError, ServiceResponseTimeoutError) as exc:
        raise TransientServiceError(
            f"{service.name} did not answer in time.", "service_timeout", billed=service.timeouts_billed
        ) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientServiceError(f"{service.name} could not be reached ({type(exc).__name__}).") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise _unreadable(service, exc, billed=service.timeouts_billed) from exc


def _unreadable(service: AzureService, exc: Exception, *, billed: bool) -> TransientServiceError:
    return TransientServiceError(
        f"{service.name} answered with a body Varia could not read ({type(exc).__name__}).",
        "service_incomplete",
        billed=billed,
    )


def classify(service: AzureService, exc: HttpResponseError) -> PermanentServiceError | TransientServiceError:
    """What an error answer means, with its code and the next step."""
    status = exc.status_code or 0
    error = getattr(exc, "error", None)
    code = str(getattr(error, "code", "") or "")
    inner = getattr(error, "innererror", None)
    if isinstance(inner, dict) and inner.get("code"):
        code = str(inner["code"])  # InvalidRequest says little; the inner code says what is wrong
    message = str(getattr(error, "message", "") or exc.reason or "")
    shown_code = f" {code}" if code else ""
    if status == 401:
        return PermanentServiceError(
            f"{service.name} refused our credentials (HTTP 401). An admin should check {service.endpoint_setting} "
            f"and the app identity's 'Cognitive Services User' role (or {service.key_setting} locally).",
            "service_auth",
        )
    if status == 403:
        return PermanentServiceError(
            f"{service.name} denied access (HTTP 403: {message}). An admin should check the app identity's "
            "'Cognitive Services User' role and the resource's network rules.",
            "service_auth",
        )
    if status == 404:
        return PermanentServiceError(
            f"{service.name} has {service.missing_api} (HTTP 404{shown_code}). An admin should check the endpoint.",
            "service_config",
        )
    if status == 429:
        headers: Any = getattr(exc.response, "headers", None) or {}
        try:
            retry_after: float | None = float(headers.get("Retry-After", ""))
        except ValueError:
            retry_after = None
        return TransientServiceError(
            f"{service.name} is at its rate limit (HTTP 429).", "quota_exhausted", retry_after=retry_after
        )
    if status >= 500:
        return TransientServiceError(f"{service.name} failed (HTTP {status}{shown_code}).")
    if status == 400 and code in service.image_codes:
        return PermanentServiceError(f"{service.name} could not read the image ({code}: {message})", "image_invalid")
    return PermanentServiceError(
        f"{service.name} rejected the request (HTTP {status}{shown_code}: {message}). An admin should check "
        f"{service.check}.",
        "service_config",
    )
