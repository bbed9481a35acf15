"""Iteration: jobs that start from a variation of an earlier job, the output options, and the cost estimate.

A result can be taken further, as people do with Midjourney's Vary and Remix or ChatGPT's "now
make it night":

- **vary** (`strength` subtle or strong): the chosen image again, changed a little or a lot. It
  keeps the parent's caption and composed prompt, so it pays for its images only.
- **remix**: the chosen image with a new prompt. It captions the image (once: captions are cached
  by the image) and composes the new request, like a new job on that picture.
- **refine**: the chosen image re-rendered at a higher quality (high unless the request names
  one). The page's loop is: n cheap drafts (low quality), pick one, refine it.

The new job's source is the parent's stored variation, so nothing is uploaded twice; the job id
hashes the parent, the action and the options, so the same request is the same job. The manifest
records the parent and the action.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any, cast

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from shared.adapters.providers.base import ImageOptions
from shared.adapters.storage import OUTPUTS, BlobNotFound, Storage
from shared.ai_models import flexible_sizes, valid_gpt_image_2_size
from shared.config import Settings
from shared.core.blobs import manifest_name
from shared.core.jobs import RequestError, is_job_id
from shared.core.models import (
    MAX_OUTPUT_PROMPT_BYTES,
    MAX_OUTPUT_PROMPT_CHARS,
    Action,
    Composition,
    JobRequest,
    Manifest,
    Origin,
    OutputOptions,
    Parent,
    Profile,
    Strength,
    cut_at_boundary,
)

ACTIONS: tuple[str, ...] = ("vary", "remix", "refine")
STRENGTHS: tuple[str, ...] = ("subtle", "strong")
# vary and refine keep the parent's caption and composed prompt: no caption or compose call.
INHERITS_PROMPT: tuple[str, ...] = ("vary", "refine")
REFINE_QUALITY = "high"

# What each action asks of the image model, before the parent's composed prompt.
TEMPLATES: dict[tuple[str, str | None], str] = {
    ("vary", "subtle"): (
        "A subtle variation of this image: keep its subject, composition, colours and style; change only small "
        "details, as a second take of the same picture."
    ),
    ("vary", "strong"): (
        "A strong variation of this image: keep its subject and its style, and reinterpret the composition, the "
        "pose, the lighting and the details freely."
    ),
    ("refine", None): (
        "Re-render this image at a higher quality: the same picture, with sharper detail, cleaner edges and "
        "finer textures; change nothing else."
    ),
}
# Where the model takes `input_fidelity`: how closely the edit follows the input image.
INPUT_FIDELITY: dict[tuple[str, str | None], str] = {
    ("vary", "subtle"): "high",
    ("vary", "strong"): "low",
    ("refine", None): "high",
}


class ParentInvalid(RequestError):
    """The variation a job should start from cannot be used: the message says which to choose instead."""

    code = "parent_invalid"


class OutputInvalid(RequestError):
    """An output option (quality, aspect, size, format, compression, background) cannot be used."""

    code = "output_invalid"


# --- Output options -------------------------------------------------------------------------------


def check_output(settings: Settings, values: Mapping[str, Any], *, masked: bool = False) -> OutputOptions:
    """OutputOptions from a request's fields (absent or blank: the default), or OutputInvalid saying what to send.

    The model checks each field (its choices, compression's range, size's shape); this adds what it
    cannot: whole-number text for compression, the rules between fields, and the image model's sizes.
    """
    given = {key: values.get(key) for key in ("quality", "aspect", "size", "format", "compression", "background")}
    given = {key: (value.strip().lower() if isinstance(value, str) else value) for key, value in given.items()}
    given = {key: value for key, value in given.items() if value not in (None, "")}
    if given.get("format") == "jpg":
        given["format"] = "jpeg"
    try:
        options = OutputOptions.model_validate(given)
    except ValidationError as exc:
        raise OutputInvalid(_said(exc.errors())) from None
    compression = given.get("compression")
    # The model's int also takes true, 70.0 and "7_0": a request's compression is digits.
    if compression is not None and (isinstance(compression, bool) or not str(compression).isdigit()):
        raise OutputInvalid(_COMPRESSION_RULE.format(str(compression)[:20]))
    if options.compression is not None and options.format != "jpeg":
        raise OutputInvalid("compression applies to JPEG: send format=jpeg with it, or no compression.")
    if options.background == "transparent" and options.format == "jpeg":
        raise OutputInvalid("A JPEG cannot be transparent: send format=png with background=transparent.")
    if options.size is not None:
        width, _, height = options.size.partition("x")
        if not valid_gpt_image_2_size(int(width), int(height)):
            raise OutputInvalid(_SIZE_RULE.format(options.size))
        if settings.image_provider == "gpt-image" and not flexible_sizes(settings.image_model):
            raise OutputInvalid(
                f"{settings.image_model} takes three sizes only: send aspect=square, landscape or portrait instead "
                "of size (custom sizes need gpt-image-2)."
            )
    if masked and (options.aspect != "auto" or options.size is not None):
        raise OutputInvalid("A region edit keeps the picture's shape: send the mask without aspect or size.")
    return options


_COMPRESSION_RULE = "compression={!r} is not a whole number from 0 to 100."
_SIZE_RULE = (
    "size={!r} is not a size the image model takes: WxH with both edges multiples of 16, "
    "the long edge at most 3 times the short one, and 655,360 to 8,294,400 pixels (e.g. 1536x864)."
)


def _said(errors: list[ErrorDetails]) -> str:
    """OutputOptions' validation errors in a request's words: the field, what it was sent, what to send.

    One is said: an unknown choice first, then compression, then the rest in the model's order.
    """
    error = min(errors, key=lambda e: (e["type"] != "literal_error", e["loc"] != ("compression",)))
    field, sent = str(error["loc"][0]), str(error["input"])
    if error["type"] == "literal_error":
        choices = str(error.get("ctx", {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{field}={sent[:40]!r} is not an option; use one of: {choices}."
    if field == "compression":
        return _COMPRESSION_RULE.format(sent[:20])
    if field == "size":
        return _SIZE_RULE.format(sent[:20])
    return f"The output options are not valid: {error['msg']}."


# --- Jobs from a parent ---------------------------------------------------------------------------


def parent_manifest(storage: Storage, job_id: str) -> Manifest | None:
    """The finished parent job's manifest, or None when it has none (unknown, or still running)."""
    try:
        return Manifest.model_validate_json(storage.get(OUTPUTS, manifest_name(job_id)))
    except BlobNotFound:
        return None


def check_action(action: Any, strength: Any) -> tuple[Action, Strength | None]:
    """(action, strength) of a request from a parent: vary takes subtle (the default) or strong."""
    name = str(action or "").strip().lower()
    if name not in ACTIONS:
        raise ParentInvalid(f"action={name[:40]!r} is not an action; use one of: {', '.join(ACTIONS)}.")
    level = str(strength or "").strip().lower() or None
    if name != "vary":
        if level is not None:
            raise ParentInvalid(f"strength goes with action=vary, not {name}: send it without strength.")
        return cast(Action, name), None
    if level is None:
        level = "subtle"
    if level not in STRENGTHS:
        raise ParentInvalid(f"strength={level[:40]!r} is not a strength; use subtle or strong.")
    return "vary", cast(Strength, level)


def chosen_parent(storage: Storage, job_id: Any, index: Any) -> tuple[Parent, Manifest]:
    """The parent variation named by a request (`from`: job id and index), checked against its manifest."""
    if not isinstance(job_id, str) or not is_job_id(job_id):
        raise ParentInvalid('\'from\' must name a job: {"job_id": "http-…", "index": 0}.')
    try:
        number = int(str(index))
    except ValueError:
        shown = str(index)[:20]
        raise ParentInvalid(f"'from' index {shown!r} is not a whole number: 0 is the first variation.") from None
    manifest = parent_manifest(storage, job_id)
    if manifest is None:
        raise ParentInvalid(
            f"Job {job_id} has no finished result to start from: wait until it has finished, or check the id."
        )
    delivered = [v.index for v in manifest.variations if v.status == "succeeded" and v.image is not None]
    if number not in delivered:
        choices = ", ".join(str(k) for k in delivered) or "none"
        raise ParentInvalid(
            f"Job {job_id} has no variation {number} to start from (delivered: {choices}). Choose one it delivered."
        )
    return Parent(job_id=job_id, index=number), manifest


def lineage_job_id(
    origin: Origin,
    parent: Parent,
    action: str,
    strength: str | None,
    prompt: str,
    profile: str,
    n: int,
    output: OutputOptions,
    nonce: str = "",
) -> str:
    """The same parent, action and options give the same job (a double click pays once); `nonce` forces a new one."""
    parts: tuple[str, ...] = (
        "parent",
        parent.job_id,
        str(parent.index),
        action,
        strength or "",
        prompt,
        profile,
        str(n),
        nonce,
    )
    parts += (output.job_id_part(),) if output.job_id_part() else ()
    return f"{origin}-" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def request_from_parent(
    parent: Parent,
    manifest: Manifest,
    *,
    action: Action,
    strength: Strength | None,
    prompt: str | None,
    profile: Profile,
    n: int,
    output: OutputOptions,
    origin: Origin,
    force: bool = False,
    requested_profile: Profile | None = None,
    profile_enforced: bool = False,
) -> JobRequest:
    """The job that takes variation `parent.index` of the parent job further.

    vary and refine keep the parent's prompt unless one is given; remix needs its new prompt.
    The source is the parent's stored variation; refine renders at high quality unless the request
    names a quality.
    """
    image = next(v.image for v in manifest.variations if v.index == parent.index and v.image is not None)
    if action == "remix" and not prompt:
        raise ParentInvalid("A remix applies a new prompt to the chosen picture: send 'prompt' with it.")
    if action == "refine" and output.quality is None:
        output = output.model_copy(update={"quality": REFINE_QUALITY})
    text = prompt or manifest.request.prompt
    nonce = str(time.time_ns()) if force else ""
    return JobRequest(
        job_id=lineage_job_id(origin, parent, action, strength, text, profile, n, output, nonce),
        source=image,
        prompt=text,
        prompt_origin="request" if prompt else "parent",
        profile=profile,
        profile_enforced=profile_enforced,
        requested_profile=requested_profile,
        n=n,
        mode="edit",
        origin=origin,
        filename=f"variation {parent.index + 1} of {parent.job_id}",
        parent=parent,
        action=action,
        strength=strength,
        output=output,
    )


def inherited_composition(parent: Manifest, request: JobRequest) -> Composition:
    """vary's and refine's composition: the parent's composed prompt, after what the action asks."""
    composed = parent.composition or Composition(verdict="allow", reason="", provider="lineage")
    lead = TEMPLATES[(request.action, request.strength)]
    body = composed.output_prompt
    if request.prompt_origin == "request" and request.prompt != parent.request.prompt:
        body = f"{body} Also: {request.prompt}"
    text = cut_at_boundary(f"{lead} {body}", MAX_OUTPUT_PROMPT_CHARS, MAX_OUTPUT_PROMPT_BYTES)
    what = "A subtle" if request.strength == "subtle" else "A strong" if request.strength == "strong" else "A refined"
    return Composition(
        verdict="allow",
        reason=(
            f"{what} {request.action} of variation {request.parent.index + 1 if request.parent else 1} of job "
            f"{parent.job_id}: its composed prompt, kept (no caption or compose call)."
        ),
        output_prompt=text,
        subtasks=composed.subtasks,
        provider="lineage",
        profile=request.profile,
    )


def image_options(request: JobRequest) -> ImageOptions:
    """What one image request of this job asks the generator for (without previews)."""
    key = (request.action, request.strength)
    out = request.output
    return ImageOptions(
        quality=out.quality,
        input_fidelity=INPUT_FIDELITY.get(key),
        action=request.action,
        strength=request.strength,
        aspect=out.aspect,
        size=out.size,
        output_format=out.format,
        output_compression=out.compression,
        background=out.background,
    )


# --- The cost, before a job starts -----------------------------------------------------------------


def image_price(prices: Mapping[str, float], quality: str) -> float:
    """One image's price at `quality`: `image.{quality}` in VARIA_PRICES_USD, else `image`."""
    return prices.get(f"image.{quality}", prices.get("image", 0.0))


def estimate(request: JobRequest, settings: Settings, paid: Mapping[str, bool]) -> dict[str, Any]:
    """The paid calls the job will make at most, and their price: shown before it starts.

    `paid` says which providers cost money (caption, compose, image, moderation). An upper bound:
    a cached caption is free, and a refused request stops before its images. Retries are not
    counted (a 429 is not billed; a second attempt after a 5xx may be).
    """
    quality = request.output.quality or settings.image_quality
    captions = 0 if request.action in INHERITS_PROMPT else 1 + len(request.references)
    composes = 0 if request.action in INHERITS_PROMPT else 1
    moderation = 0
    if paid.get("moderation"):
        moderation = 1 + (2 if request.action not in INHERITS_PROMPT else 0)  # request; shield + prompt
        moderation += request.n if request.profile == "kids" else 0  # each image, before it is shown
    calls = {
        "caption": captions if paid.get("caption") else 0,
        "compose": composes if paid.get("compose") else 0,
        "image": request.n if paid.get("image") else 0,
        "moderation": moderation,
    }
    prices = settings.prices_usd
    usd = sum(calls[k] * prices.get(k, 0.0) for k in ("caption", "compose", "moderation"))
    usd += calls["image"] * image_price(prices, quality)
    return {"paid_calls": calls, "usd": round(usd, 6), "quality": quality}
