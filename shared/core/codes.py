"""Every code a job, a variation or a refused request can carry, with what it means and what to do.

Codes are stable and machine-readable: the status API returns them, the page picks its advice by
code (never by reading the message), scripts branch on them, and the README's API section lists
them (generated from this table). Messages are for people and may change; codes do not.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
        Code(
            "mask_invalid",
            "The region edit's mask cannot be used: not a PNG, no transparent area, too large, or a mask with "
            "mode=generate (or, for a blob drop, the mask blob named in its metadata is missing).",
            "Send a PNG whose transparent pixels mark the area to change, with mode=edit.",
            "user",
        ),
        Code(
            "reference_invalid",
            "A reference picture cannot be used: not an image, damaged, more than 4, an unknown role, with "
            "mode=generate, or (for a blob drop) a reference blob that is gone.",
            "Send at most 4 JPEG, PNG, GIF or WEBP references, each 'style' or 'subject', with mode=edit.",
            "user",
        ),
        Code(
            "parent_invalid",
            "The variation a job should start from cannot be used: its job is unknown or not finished, it did not "
            "deliver that variation, or the action or strength is unknown (a remix without a prompt).",
            "Choose a delivered variation of a finished job, and action vary, remix or refine.",
            "user",
        ),
        Code(
            "output_invalid",
            "An output option cannot be used: an unknown quality, aspect, format or background, a size the model "
            "does not take, compression without JPEG, or a transparent JPEG.",
            "Fix the option named.",
            "user",
        ),
        Code(
            "cancelled",
            "The job's sender cancelled it: the steps still to run made no paid call (images already drawn are "
            "kept and delivered).",
            "Start the job again to make new pictures (over the API, send it with force=true).",
            "user",
        ),
        Code(
            "job_finished",
            "The job has already ended, so it cannot be cancelled.",
            "Nothing to do: its result stays as it is.",
            "user",
        ),
        Code(
            "offline_limited",
            "The job succeeded offline, but the offline painter could not do all that was asked (add or move "
            "things, draw a described scene, a transparent background, a style it does not know).",
            "Set AZURE_OPENAI_ENDPOINT and an image deployment (see Settings) to have it drawn as asked.",
            "admin",
        ),
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
            "moderation_refused",
            "Azure AI Content Safety rated the request, the composed prompt or a generated image over the safety "
            "profile's limits, or found instructions to the AI hidden in the request or the image.",
            "Change the prompt or the image.",
            "user",
        ),
        Code(
            "minor_edit_refused",
            "Azure does not edit photos of children by default.",
            "Choose 'Draw a new scene' (generate mode) instead of editing the photo.",
            "user",
        ),
        Code(
            "profile_enforced",
            "The app's settings (VARIA_ENFORCED_PROFILE) lock every job to one safety profile, and the request "
            "named another.",
            "Send the request without a profile, or with the one the app enforces; only an admin can change it.",
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
        Code("storage_error", "The storage failed in another way.", "An admin must check the storage.", "admin"),
        Code(
            "storage_in_use",
            "Another Varia process (a server or a CLI run) is using the same storage.",
            "Stop the other process, or use another folder.",
            "user",
        ),
        # The blob trigger
        Code(
            "invalid_blob_name",
            "The dropped blob's name is one Varia will not read (path tricks, control characters).",
            "Upload the image again under a plain name.",
            "user",
        ),
        # Refused requests: the HTTP API and the local server answer these before any job starts
        Code("upload_too_large", "The upload is over the size limit.", "Pick a smaller picture.", "user"),
        Code(
            "invalid_image",
            "The upload is not an image Varia reads, or its header is damaged.",
            "Pick another picture: a JPEG, PNG, GIF or WEBP.",
            "user",
        ),
        Code(
            "form_too_large",
            "The form has more than 16 parts or a text field over 64 KB.",
            "Send one image, at most one mask and 4 references, and the fields prompt, profile, n, mode, force "
            "and reference_role.",
            "user",
        ),
        Code(
            "malformed_body",
            "The body is not a readable multipart form or JSON object.",
            "Send a multipart form or a JSON object, as the API section of the README shows.",
            "user",
        ),
        Code(
            "unsupported_media_type",
            "The body is neither multipart/form-data nor JSON.",
            "Send multipart/form-data or application/json.",
            "user",
        ),
        Code(
            "body_incomplete",
            "The request body ended early or its chunks were malformed.",
            "Send the picture again.",
            "user",
        ),
        Code(
            "too_many_jobs",
            "The caller already has as many jobs running as the app allows for one caller (VARIA_MAX_JOBS_PER_CALLER).",
            "Wait for one of your jobs to finish, then send this one again; Retry-After says when to try.",
            "later",
        ),
        Code("job_not_found", "No job has this id.", "Check the id, or start the job again.", "user"),
        Code(
            "image_not_found",
            "The job has no such image, or not yet.",
            "Wait for the job to finish; ask for 'source', 'manifest' or a variation index.",
            "user",
        ),
        Code(
            "cross_origin_refused",
            "The local server takes jobs only from its own page, and this request came from another site.",
            "Open Varia's own page and start the job there.",
            "user",
        ),
        Code(
            "host_not_allowed",
            "The request named a host that is not the local server (a DNS-rebinding page, say).",
            "Open the page at the address the server printed.",
            "user",
        ),
        Code(
            "not_found",
            "The local server has no such route.",
            "Open the page at /api/ui; the API is under /api/variations.",
            "user",
        ),
        Code(
            "method_not_allowed", "The route does not take this method.", "Use a method the Allow header names.", "user"
        ),
        Code("bad_request", "The local server could not read the request.", "Send the request again.", "user"),
        Code(
            "server_error",
            "The local server failed on this request.",
            "Try again; if it persists, its console shows why.",
            "later",
        ),
        # Anything else
        Code("internal", "Varia stopped on an error of its own.", "Try again; report it if it persists.", "later"),
    )
}


def advice(code: str | None) -> str | None:
    return CODES[code].advice if code in CODES else None


# The HTTP status of an answer that refuses a request with this code (the API's `{"error", "code"}`).
# A code not listed here is only ever a job's or a variation's.
HTTP_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "invalid_image": 400,
    "mask_invalid": 400,
    "reference_invalid": 400,
    "parent_invalid": 400,
    "job_finished": 409,
    "output_invalid": 400,
    "malformed_body": 400,
    "body_incomplete": 400,
    "bad_request": 400,
    "cross_origin_refused": 403,
    "host_not_allowed": 403,
    "job_not_found": 404,
    "image_not_found": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "profile_enforced": 409,
    "upload_too_large": 413,
    "form_too_large": 413,
    "unsupported_media_type": 415,
    "too_many_jobs": 429,
    "server_error": 500,
    "storage_read_only": 503,
    "storage_unreachable": 503,
    "storage_error": 503,
    "storage_full": 507,
}

# The "who acts" column: the person sending, the app's admin, or time (the same request works later).
WHO_TEXT: dict[str, str] = {"user": "the sender", "admin": "an admin", "later": "time: try again later"}


def page_table() -> dict[str, dict[str, str]]:
    """What the page needs to pick its advice by code (served in config.json): code -> advice and who."""
    return {name: {"advice": code.advice, "who": code.who} for name, code in CODES.items()}


# --- The generated docs: the README's table of codes ------------------------------------------

README_START = "<!-- codes table: generated by `python -m shared.core.codes --write` -->"
README_END = "<!-- end of codes table -->"


def codes_table() -> str:
    """The README's table of codes, in CODES's order, one row per code."""
    rows = ["| code | HTTP | what it means | what to do | who acts |", "|---|---|---|---|---|"]
    for name, code in CODES.items():
        status = str(HTTP_STATUS[name]) if name in HTTP_STATUS else ""
        rows.append(f"| `{name}` | {status} | {code.meaning} | {code.advice} | {WHO_TEXT[code.who]} |")
    return "\n".join(rows)


def readme_with_table(readme: str) -> str:
    start, end = readme.index(README_START), readme.index(README_END)
    return readme[: start + len(README_START)] + "\n" + codes_table() + "\n" + readme[end:]


def write_docs(root: Path) -> None:
    readme = root / "README.md"
    readme.write_text(readme_with_table(readme.read_text(encoding="utf-8")), encoding="utf-8")


def main(argv: list[str] | None = None, write: Callable[[Path], None] = write_docs) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--write"]:
        print("usage: python -m shared.core.codes --write   (regenerates README.md's table of codes)", file=sys.stderr)
        return 2
    write(Path(__file__).resolve().parent.parent.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
