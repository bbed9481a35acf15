"""Every code a job, a variation or a refused request can carry, with what it means and what to do.

Codes are stable and machine-readable: the status API returns them, the page picks its advice by
code (never by reading the message), scripts branch on them, and the README's API section lists
them (generated from this table). Messages are for people and may change; codes do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Who = Literal["user", "admin", "later"]  # who can act on it: the person sending, the app's admin, or time


@dataclass(frozen=True)
class Code:
    name: str
    meaning: str
    advice: str  # the next step, as the page shows it
    who: Who


CODES: dict[str, Code] = {
    code.name: code
    for code in (
        # The input
        Code("not_an_image", "The file is not an image Varia reads.", "Send a JPEG, PNG, GIF, WEBP or TIFF.", "user"),
        Code("image_invalid", "The image is damaged, too small or too large in pixels.", "Send another image.", "user"),
        Code("image_too_large", "The file is over the size limit.", "Send a smaller image.", "user"),
        Code("image_missing", "The image was deleted before the job read it.", "Upload it again.", "user"),
        Code("invalid_request", "A field of the request is missing or malformed.", "Fix the field named.", "user"),
        # Safety
        Code("word_check", "The word check refused the prompt or the captioned image.", "Change the prompt.", "user"),
        Code(
            "composer_refused",
            "The prompt composer judged the request unsafe for the profile.",
            "Change the prompt.",
            "user",
        ),
        Code("service_refused", "The AI service's content filter refused.", "Change the prompt or the image.", "user"),
        Code(
            "minor_edit_refused",
            "Azure does not edit photos of children by default.",
            "Choose 'Draw a new scene' (generate mode) instead of editing the photo.",
            "user",
        ),
        Code(
            "resource_blocked",
            "Azure blocked the AI resource for a while after repeated policy violations.",
            "An admin must check the resource in the Azure portal; new jobs fail until it is unblocked.",
            "admin",
        ),
        # The services
        Code(
            "service_auth",
            "The AI service refused the app's credentials.",
            "An admin must check the endpoint and the app identity's role.",
            "admin",
        ),
        Code(
            "service_config",
            "The AI service has no such deployment, or refused a parameter.",
            "An admin must check the deployment names and models.",
            "admin",
        ),
        Code(
            "quota_exhausted",
            "The deployment's rate limit was reached on every attempt.",
            "Try again in a few minutes; an admin can raise the deployment's capacity.",
            "later",
        ),
        Code("service_unavailable", "The AI service failed or could not be reached.", "Try again later.", "later"),
        Code(
            "service_timeout",
            "The AI service did not answer in time.",
            "Try again later; a lower quality answers faster.",
            "later",
        ),
        Code(
            "service_incomplete",
            "The AI service answered without a usable result.",
            "Try again; if it persists an admin should check the model's token budget.",
            "later",
        ),
        # Storage
        Code("storage_full", "The storage is full.", "An admin must free space or raise the quota.", "admin"),
        Code(
            "storage_read_only",
            "The storage refused to be written to.",
            "An admin must check its permissions.",
            "admin",
        ),
        Code("storage_unreachable", "The storage could not be reached.", "Try again later.", "later"),
        # Anything else
        Code("internal", "Varia stopped on an error of its own.", "Try again; report it if it persists.", "later"),
    )
}


def advice(code: str | None) -> str | None:
    return CODES[code].advice if code in CODES else None
