"""What each activity does: prepare, caption, compose, generate, persist.

Each step takes one model and returns one (the contracts in `models.py`), reads and writes images
through `Storage`, and is idempotent, because Durable runs activities at least once. Permanent
outcomes (bad input, refusals, misconfiguration) come back as a `Problem` value with a code;
transient ones raise, so Durable retries them. `STEPS` holds the same steps with JSON in and out,
as Durable (and the local runtime) call them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from shared import telemetry
from shared.adapters.providers.base import (
    ComposeResult,
    ContentRefused,
    ImageOptions,
    ModerationVerdict,
    ProviderError,
    TransientServiceError,
)
from shared.adapters.providers.offline import OfflineStylizer, offline_limits
from shared.adapters.quota import SLACK, ImageQuota, interval_s
from shared.adapters.services import Services, get_services
from shared.adapters.storage import (
    OUTPUTS,
    WORK,
    BlobNotFound,
    Storage,
    StorageFull,
    StorageReadOnly,
    StorageUnavailable,
)
from shared.core import budget
from shared.core.blobs import (
    cancel_name,
    caption_cache_name,
    caption_claim_name,
    job_of,
    manifest_name,
    mask_name,
    moderation_name,
    moderation_prefix,
    preview_name,
    reference_name,
    source_name,
    unrated_name,
    variation_name,
    variation_prefix,
)
from shared.core.codes import advice
from shared.core.images import (
    JPEG_QUALITY,
    InvalidImage,
    content_type_of,
    encode_png,
    normalize,
    open_prepared,
    open_rgb,
    sniff,
)
from shared.core.lineage import INHERITS_PROMPT, image_options, image_price, inherited_composition, parent_manifest
from shared.core.masks import composite_back, prepare_mask
from shared.core.models import (
    MAX_OUTPUT_PROMPT_BYTES,
    MAX_OUTPUT_PROMPT_CHARS,
    BlobRef,
    CallCount,
    Caption,
    ComposeInput,
    Composition,
    Generated,
    GenerateInput,
    JobRecord,
    JobRequest,
    Manifest,
    ModerationRecord,
    PaidCalls,
    PlannedImageRequest,
    PreparedImage,
    Problem,
    QuotaPlan,
    Reference,
    ReserveInput,
    Variation,
    cut_at_boundary,
    json_bytes,
)
from shared.core.safety import Verdict, check_text, get_profile

JSON = dict[str, Any]
log = logging.getLogger("varia.steps")


def problem(status: str, code: str, stage: str, message: str) -> Problem:
    return Problem(status=status, code=code, stage=stage, message=message)  # type: ignore[arg-type]


def delivered_so_far(storage: Storage, job_id: str) -> int:
    """How many variations of a running job are stored: its progress within a fan-out round."""
    prefix = variation_prefix(job_id)
    return sum(1 for name in storage.list(OUTPUTS, prefix) if name.startswith(prefix))


CANCELLED = (
    "Cancelled at your request while {stage}: nothing more was paid for. Send it again with force=true to start over."
)


def cancelled(services: Services, job_id: str) -> bool:
    """Whether the job's sender cancelled it (work/{job}/cancel): its remaining steps make no paid call."""
    return services.storage.info(WORK, cancel_name(job_id)) is not None


def _cancelled_problem(stage: str) -> Problem:
    return problem("failed", "cancelled", stage, CANCELLED.format(stage=stage))


def prepare(services: Services, request: JobRequest) -> PreparedImage | Problem:
    """Check the prompt (free), read, validate and normalize the image into work/{job}/source (JPEG, or
    PNG when it has transparency), then have Content Safety rate the prompt when it is configured (a paid
    call, made once the image is known good).
    """
    if cancelled(services, request.job_id):
        return _cancelled_problem("preparing")
    verdict = _word_check(services, request.job_id, request.prompt, request.profile, "request")
    if not verdict.allowed:
        return problem("refused", "word_check", "preparing", f"{verdict.reason} Change the prompt.")
    source = request.source
    shown = display_name(request)
    gone = problem(
        "failed",
        "image_missing",
        "preparing",
        f"The image {shown} no longer exists. Upload it again to start a new job.",
    )
    info = services.storage.info(source.container, source.name)
    if info is None:
        return gone
    limit = services.settings.max_upload_bytes
    if info.size > limit:  # decided from the blob's properties, before downloading it
        mb = 1024 * 1024
        message = f"{shown} is {info.size / mb:.1f} MB; the limit is {limit // mb} MB. Send a smaller image."
        return problem("failed", "image_too_large", "preparing", message)
    try:
        data = services.storage.get(source.container, source.name)
    except BlobNotFound:
        return gone
    try:
        image = normalize(data)
    except InvalidImage as exc:
        code = "not_an_image" if str(exc).startswith("Not an image") else "image_invalid"
        return problem("failed", code, "preparing", f"{shown}: {exc} The original was left unchanged.")
    mask = _prepared_mask(services, request.mask, request.job_id, (image.width, image.height)) if request.mask else None
    if isinstance(mask, Problem):  # before any paid call
        return mask
    references = _prepared_references(services, request)
    if isinstance(references, Problem):
        return references
    moderator = services.providers.moderator
    if moderator.paid:
        rated, failure = _moderated(
            services,
            request.job_id,
            "request",
            "text",
            lambda: moderator.check_text(request.prompt, request.profile, what="request"),
        )
        if failure is not None:
            return _stopped("preparing", failure)
        if rated is not None and rated.verdict == "refused":
            return problem("refused", "moderation_refused", "preparing", f"{rated.reason} Change the prompt.")
    ref = services.storage.put(WORK, source_name(request.job_id), image.data, image.content_type)
    prepared = PreparedImage(
        image=ref.model_copy(update={"sha256": image.sha256}),
        width=image.width,
        height=image.height,
        original_format=image.original_format,
        original_bytes=len(data),
        mask=mask[0] if mask else None,
        mask_share=mask[1] if mask else None,
        references=references,
        inherits=request.parent if request.action in INHERITS_PROMPT else None,
    )
    return prepared


def _prepared_mask(
    services: Services, given: BlobRef, job_id: str, size: tuple[int, int]
) -> tuple[BlobRef, float] | Problem:
    """The region edit's mask scaled to the prepared image, stored as work/{job}/mask.png, with its share."""
    data = _given(services, given, "mask_invalid", f"The mask {given.name}")
    if isinstance(data, Problem):
        return data
    try:
        mask = prepare_mask(data, size)
    except InvalidImage as exc:
        return problem("failed", "mask_invalid", "preparing", f"{exc} The picture and the mask were left unchanged.")
    ref = services.storage.put(WORK, mask_name(job_id), mask.png, "image/png")
    return ref, mask.share


def _given(services: Services, where: BlobRef, code: str, what: str) -> bytes | Problem:
    """A blob that came with the request (a mask, a reference), or the Problem saying it is gone."""
    try:
        return services.storage.get(where.container, where.name)
    except BlobNotFound:
        return problem("failed", code, "preparing", f"{what} no longer exists. Send it again with the picture.")


def _prepared_references(services: Services, request: JobRequest) -> list[Reference] | Problem:
    """Each reference read, checked and normalized like the source, as work/{job}/reference-{k}."""
    prepared = []
    for number, reference in enumerate(request.references, start=1):
        where = reference.image
        data = _given(services, where, "reference_invalid", f"Reference {number} ({where.name})")
        if isinstance(data, Problem):
            return data
        try:
            image = normalize(data)
        except InvalidImage as exc:
            message = f"Reference {number} ({where.name}): {exc} Nothing was changed."
            return problem("failed", "reference_invalid", "preparing", message)
        ref = services.storage.put(WORK, reference_name(request.job_id, number), image.data, image.content_type)
        prepared.append(Reference(image=ref.model_copy(update={"sha256": image.sha256}), role=reference.role))
    return prepared


def display_name(request: JobRequest) -> str:
    """The image as the user knows it: their file name, else the blob's name."""
    return request.filename or request.source.name


def _paid_call(
    services: Services, job_id: str, call: str, what: str, attempt: Callable[[], Any]
) -> tuple[Any, ProviderError | None]:
    """One attempt of a paid call within the spend budget: (result, None) or (None, why it did not deliver).

    A transient answer with attempts left raises, so Durable runs the step again (after its retry
    interval): that run makes the second and last attempt. With the budget spent, the last
    answer comes back as the reason, never raised.
    """
    record = budget.take(services.storage, job_id, call)
    if record is None:
        last = budget.read(services.storage, job_id, call)
        spent = budget.spent_message(last, what)
        return None, TransientServiceError(spent, last.last_code or "service_unavailable", retryable=False)
    try:
        result = attempt()
    except ProviderError as exc:
        budget.settle(services.storage, job_id, call, record, code=exc.code, message=str(exc))
        if isinstance(exc, TransientServiceError) and exc.retryable and record.has_room:
            raise
        return None, exc
    budget.settle(services.storage, job_id, call, record, code=None, message="")
    return result, None


def _stopped(stage: str, exc: ProviderError) -> Problem:
    status = "refused" if isinstance(exc, ContentRefused) else "failed"
    return problem(status, exc.code, stage, _with_next_step(str(exc), exc.code))


# --- Moderation: the free word check first, then Azure AI Content Safety when it is configured ------


def _word_check(services: Services, job_id: str, text: str, profile: str, what: str) -> Verdict:
    """The deterministic word check (free), its verdict recorded for the manifest.

    Where Content Safety is configured, text in a language the word check cannot read is Content
    Safety's to judge, so the word check is asked not to refuse it on that ground alone (it does,
    for kids, when it is the only check).
    """
    fail_closed = False if services.providers.moderator.paid else None  # None: the profile's own rule
    verdict = check_text(text, profile, what=_WHAT[what], fail_closed=fail_closed)
    allowed: Literal["allowed", "refused"] = "allowed" if verdict.allowed else "refused"
    _save_record(
        services,
        job_id,
        ModerationRecord(what=what, check="word-check", provider="word-check", verdict=allowed, reason=verdict.reason),
    )
    return verdict


# How each thing judged is named in a message.
_WHAT = {"request": "request", "caption": "image (as captioned)", "prompt": "composed prompt"}


def _save_record(services: Services, job_id: str, record: ModerationRecord) -> None:
    name = moderation_name(job_id, record.what, record.check)
    services.storage.put(WORK, name, record.model_dump_json().encode(), "application/json")


def _saved_record(services: Services, job_id: str, what: str, check: str) -> ModerationRecord | None:
    try:
        return ModerationRecord.model_validate_json(services.storage.get(WORK, moderation_name(job_id, what, check)))
    except BlobNotFound:
        return None


def _as_record(what: str, check: str, verdict: ModerationVerdict) -> ModerationRecord:
    return ModerationRecord(
        what=what,
        check=check,  # type: ignore[arg-type]
        provider=verdict.provider,
        verdict=verdict.verdict,
        reason=verdict.reason,
        categories=verdict.categories,
        attacks=verdict.attacks,
    )


def _moderated(
    services: Services, job_id: str, what: str, check: str, ask: Callable[[], ModerationVerdict]
) -> tuple[ModerationRecord | None, ProviderError | None]:
    """Content Safety's verdict on `what`, asked once per job: a step run again reads the recorded one."""
    done = _saved_record(services, job_id, what, check)
    if done is not None:
        return done, None
    call = f"moderation-{what}" if check != "shield" else "moderation-shield"
    verdict, failure = _paid_call(services, job_id, call, "content moderation", ask)
    if failure is not None:
        return None, failure
    record = _as_record(what, check, verdict)
    _save_record(services, job_id, record)
    return record, None


def _moderation_records(services: Services, job_id: str) -> list[ModerationRecord]:
    """Every verdict of the job, in the order the steps make them."""
    prefix = moderation_prefix(job_id)
    records = []
    for name in services.storage.list(WORK, prefix):
        try:
            records.append(ModerationRecord.model_validate_json(services.storage.get(WORK, name)))
        except (BlobNotFound, ValueError):
            continue  # a record half gone is not a verdict
    stages = {"request": 0, "caption": 1, "prompt": 2}
    checks = {"word-check": 0, "text": 1, "shield": 1, "image": 1}

    def order(record: ModerationRecord) -> tuple[int, int, int]:
        index = int(record.what.removeprefix("image-")) if record.what.startswith("image-") else 0
        return (stages.get(record.what, 3), index, checks[record.check])

    return sorted(records, key=order)


def caption(services: Services, prepared: PreparedImage) -> Caption | Problem:
    """Caption the normalized image and each reference (a paid call each), from the cache when an image
    was captioned before; the references' captions go into the source's Caption, in order."""
    if cancelled(services, job_of(prepared.image.name)):
        return _cancelled_problem("captioning")
    if prepared.inherits is not None:  # vary, refine: the parent's caption, no call
        parent = parent_manifest(services.storage, prepared.inherits.job_id)
        if parent is not None and parent.caption is not None:
            return parent.caption.model_copy(update={"cached": True})
    found = _caption_of(services, prepared.image, "caption")
    if isinstance(found, Problem) or not prepared.references:
        return found
    texts = []
    for number, reference in enumerate(prepared.references, start=1):
        of_reference = _caption_of(services, reference.image, f"caption-reference-{number}")
        if isinstance(of_reference, Problem):
            return of_reference
        texts.append(of_reference.text)
    return found.model_copy(update={"references": texts})


def _caption_of(services: Services, image: BlobRef, call: str) -> Caption | Problem:
    """One prepared image's caption: cached by the image's sha256, else one paid call (`call` in the budget)."""
    captioner = services.providers.captioner
    cache_name = caption_cache_name(str(image.sha256), captioner.name)
    cached = _cached_caption(services, cache_name)
    if cached is not None:
        return cached
    png = services.storage.get(image.container, image.name)
    if captioner.paid:
        job_id = job_of(image.name)
        # Single flight: of the jobs that reach an uncached image at once, the one that claims it
        # pays for the caption; the others wait for the cache (no longer than a call may take).
        claim = caption_claim_name(cache_name)
        if not services.storage.claim(WORK, claim, f"{job_id} {time.time():.3f}"):
            waited = _wait_for_caption(services, cache_name, claim)
            if waited is not None:
                return waited
        result, failure = _paid_call(services, job_id, call, "captioner", lambda: captioner.caption(png))
        if failure is not None:
            return _stopped("captioning", failure)
    else:
        result = captioner.caption(png)
    found = Caption(text=result.text, tags=result.tags, provider=captioner.name)
    services.storage.put(WORK, cache_name, found.model_dump_json().encode(), "application/json")
    return found


CAPTION_POLL_S = 0.25


def _cached_caption(services: Services, cache_name: str) -> Caption | None:
    try:
        cached = Caption.model_validate_json(services.storage.get(WORK, cache_name))
    except BlobNotFound:
        return None  # an image not seen before
    return cached.model_copy(update={"cached": True})


def _wait_for_caption(services: Services, cache_name: str, claim: str) -> Caption | None:
    """The caption another job is paying for, once it is cached; None if it does not come in time.

    A claim older than one call can take is stale (its job failed or stopped): no wait at all.
    """
    window = services.settings.service_timeout_s + 5
    try:
        claimed_at = float(services.storage.get(WORK, claim).decode().rsplit(" ", 1)[-1])
    except (BlobNotFound, ValueError):  # being written this instant: a fresh claim
        claimed_at = time.time()
    deadline = time.monotonic() + window - (time.time() - claimed_at)
    while time.monotonic() < deadline:
        cached = _cached_caption(services, cache_name)
        if cached is not None:
            return cached
        time.sleep(CAPTION_POLL_S)
    log.warning("No caption arrived for %s in time: this job captions the image itself", cache_name)
    return None


def compose(services: Services, work: ComposeInput) -> Composition | Problem:
    """Turn caption + request into the output prompt, or a refusal, under the job's safety profile."""
    request, found = work.request, work.caption
    if cancelled(services, request.job_id):
        return _cancelled_problem("composing")
    profile = get_profile(request.profile)
    if request.parent is not None and request.action in INHERITS_PROMPT:
        inherited = _inherited(services, request)
        if inherited is not None:
            return inherited
    composer = services.providers.composer
    moderator = services.providers.moderator
    described = _described(work)
    verdict = _word_check(services, request.job_id, described, profile.name, "caption")
    if not verdict.allowed:
        return Composition(
            verdict="refuse", reason=verdict.reason, provider="word-check", profile=request.profile, code="word_check"
        )
    if moderator.paid:
        # Prompt Shields: the request as the user's prompt, the caption as a document the composer reads.
        shielded, failure = _moderated(
            services,
            request.job_id,
            "caption",
            "shield",
            lambda: moderator.shield(request.prompt, [found.text, *found.references]),
        )
        if failure is not None:
            return _stopped("composing", failure)
        if shielded is not None and shielded.verdict == "refused":
            return Composition(
                verdict="refuse",
                reason=shielded.reason,
                provider=moderator.name,
                profile=request.profile,
                code="moderation_refused",
            )

    def attempt() -> ComposeResult:
        return composer.compose(described, request.prompt, profile)

    if composer.paid:
        result, failure = _paid_call(services, request.job_id, "compose", "prompt composer", attempt)
        if failure is not None:
            return _stopped("composing", failure)
    else:
        result = attempt()
    verdict_text, reason, output_prompt = result.verdict, result.reason, result.output_prompt
    code = (result.code or "composer_refused") if verdict_text == "refuse" else None
    if verdict_text == "allow":
        # The prompt kept is ours to cap (GPT-image takes 32,000 characters; see MAX_OUTPUT_PROMPT_CHARS):
        # cut at a sentence or a word, the profile's suffix kept whole, and the cut said in the manifest.
        suffix = profile.prompt_suffix if output_prompt.endswith(profile.prompt_suffix) else ""
        body = output_prompt[: len(output_prompt) - len(suffix)]
        suffix_bytes = sum(map(json_bytes, suffix))
        kept = cut_at_boundary(body, MAX_OUTPUT_PROMPT_CHARS - len(suffix), MAX_OUTPUT_PROMPT_BYTES - suffix_bytes)
        if kept != body:
            cut = f"The composed prompt was cut from {len(output_prompt):,} to {len(kept + suffix):,} characters."
            output_prompt, reason = kept + suffix, f"{cut} {reason}"
        # The composer's own words pass the same word check: a model talked round is still caught.
        second = _word_check(services, request.job_id, output_prompt, profile.name, "prompt")
        if not second.allowed:
            verdict_text, reason, code = "refuse", second.reason, "word_check"
        elif moderator.paid:
            rated, failure = _moderated(
                services,
                request.job_id,
                "prompt",
                "text",
                lambda: moderator.check_text(output_prompt, profile.name, what="composed prompt"),
            )
            if failure is not None:
                return _stopped("composing", failure)
            if rated is not None and rated.verdict == "refused":
                verdict_text, reason, code = "refuse", f"{rated.reason} Change the prompt.", "moderation_refused"
    return Composition(
        verdict=verdict_text,
        reason=reason,
        output_prompt=output_prompt if verdict_text == "allow" else "",
        subtasks=result.subtasks,
        provider=composer.name,
        profile=request.profile,
        code=code,
    )


def _inherited(services: Services, request: JobRequest) -> Composition | None:
    """vary's and refine's prompt: the parent's composed prompt after the action's words, word-checked (free)."""
    assert request.parent is not None  # noqa: S101 (compose checked it)
    parent = parent_manifest(services.storage, request.parent.job_id)
    if parent is None or parent.composition is None or parent.composition.verdict != "allow":
        return None  # compose it as a new request would be
    composition = inherited_composition(parent, request)
    verdict = _word_check(services, request.job_id, composition.output_prompt, request.profile, "prompt")
    if not verdict.allowed:
        return composition.model_copy(
            update={"verdict": "refuse", "reason": verdict.reason, "output_prompt": "", "code": "word_check"}
        )
    return composition


_ROLE_WORDS = {"style": "borrow its style", "subject": "put what it shows in the picture"}


def _described(work: ComposeInput) -> str:
    """The caption the composer reads: the picture's, then each reference's with what it is for."""
    lines = [work.caption.text]
    for number, (reference, text) in enumerate(zip(work.request.references, work.caption.references, strict=False), 1):
        lines.append(f"Reference image {number} ({_ROLE_WORDS[reference.role]}): {text}")
    return "\n".join(lines)


def reserve(services: Services, work: ReserveInput) -> QuotaPlan:
    """The job's image requests for this round, each with its slot in the shared quota (shared/adapters/quota.py).

    A few milliseconds of storage work: the orchestrator then waits for the first slot on a
    durable timer, so no activity is held while a job waits its turn.
    """
    quota = services.quota
    if quota is None or cancelled(services, work.job_id):
        # Offline images cost nothing: every variation at once, one request each. A cancelled job
        # takes no slot: its generate steps end at once.
        return QuotaPlan(requests=[PlannedImageRequest(indices=[i]) for i in work.indices])
    planned = quota.plan(work.indices, work.avoid)
    now = time.time()
    telemetry.record_queue_wait([(p.deployment, p.at - now) for p in planned])
    return QuotaPlan(
        requests=[
            PlannedImageRequest(indices=list(p.indices), deployment=p.deployment, not_before=p.at) for p in planned
        ]
    )


def generate(services: Services, work: GenerateInput) -> Variation:
    """Draw variation `work.index` alone (one request): see `generate_request`."""
    return generate_request(services, work.model_copy(update={"indices": [work.index]}))[0]


def generate_request(services: Services, work: GenerateInput) -> list[Variation]:
    """Draw the variations of one image request, unless an earlier attempt already stored them.

    It never raises for what a service or storage answers: the orchestrator waits for all the
    job's requests with one `task_all`, which would stop at the first exception. One call makes
    at most one attempt per image; a failure another attempt may cure comes back marked
    `retryable`, and the orchestrator's second round makes that attempt, the last the spend
    budget allows.
    """
    job_id, drawn = work.request.job_id, work.drawn
    try:
        return _generate_request(services, work)
    except (StorageFull, StorageReadOnly) as exc:  # another attempt cannot cure it: see _storage_fault
        log.error("Job %s: %s while generating variations %s: %s", job_id, exc.code, drawn, exc)
        return [Variation(index=i, status="failed", provider="unknown", reason=str(exc), code=exc.code) for i in drawn]
    except StorageUnavailable as exc:
        log.warning("Job %s: storage unreachable while generating variations %s: %s", job_id, drawn, exc)
        return [
            Variation(index=i, status="failed", provider="unknown", reason=str(exc), code=exc.code, retryable=True)
            for i in drawn
        ]
    except Exception as exc:  # anything unforeseen: logged, then one more round
        log.exception("Variations %s of job %s failed", drawn, job_id)
        reason = f"Varia stopped on an error of its own ({type(exc).__name__})."
        return [
            Variation(index=i, status="failed", provider="unknown", reason=reason, code="internal", retryable=True)
            for i in drawn
        ]


def _generate_request(services: Services, work: GenerateInput) -> list[Variation]:
    request = work.request
    generator = services.providers.generator
    if cancelled(services, request.job_id):
        drawn = [_already_drawn(services, work, index) for index in work.drawn]
        reason = "Cancelled at your request before this image was drawn: it was not paid for."
        return [
            done or Variation(index=index, status="failed", provider=generator.name, reason=reason, code="cancelled")
            for index, done in zip(work.drawn, drawn, strict=True)
        ]
    results: dict[int, Variation] = {}
    records: dict[int, budget.CallRecord] = {}
    for index in work.drawn:
        done = _already_drawn(services, work, index)
        if done is not None:
            results[index] = done
            continue
        record = budget.take(services.storage, request.job_id, f"image-{index}") if generator.paid else None
        if generator.paid and record is None:
            last = budget.read(services.storage, request.job_id, f"image-{index}")
            reason = budget.spent_message(last, "image model")
            code = last.last_code or "service_unavailable"
            results[index] = Variation(index=index, status="failed", provider=generator.name, reason=reason, code=code)
            continue
        records[index] = record or budget.CallRecord()
    drawing = list(records)
    if drawing:
        results.update(_draw(services, work, drawing, records))
    return [results[i] for i in work.drawn]


def _already_drawn(services: Services, work: GenerateInput, index: int) -> Variation | None:
    """The variation an earlier run of this step settled (stored, refused, or drawn and awaiting its rating)."""
    request, generator = work.request, services.providers.generator
    existing = services.storage.info(OUTPUTS, variation_name(request.job_id, index))
    if existing is not None:
        provider = existing.metadata.get("provider", generator.name)
        ref = BlobRef(container=OUTPUTS, name=variation_name(request.job_id, index), etag=existing.etag)
        return Variation(index=index, status="succeeded", image=ref, provider=provider, reused=True)
    if services.providers.moderator.paid and request.profile == "kids":
        done = _saved_record(services, request.job_id, f"image-{index}", "image")
        if done is not None and done.verdict == "refused":  # rated before (the activity ran again): still refused
            return _refused_image(generator.name, index, done)
        held = services.storage.info(WORK, unrated_name(request.job_id, index))
        if held is not None and held.size > 0:  # drawn and paid for, but its rating did not answer: rate it now
            image = services.storage.get(WORK, unrated_name(request.job_id, index))
            return _rate_and_store(services, work, index, image)
    return None


def _wait_for_slot(services: Services, work: GenerateInput, count: int) -> tuple[str, _Gate | None]:
    """The deployment to call, once its quota slot has come (the one the orchestrator reserved, else a new
    one), and the gate its request passes as it leaves.

    The orchestrator waits for the slot on a durable timer and starts this step at it; what is
    left to wait here is the timer's own earliness (and, counted by image, the gap to this
    image's slot), then the gate that spaces calls as they leave (a fraction of one interval),
    never a queue.
    """
    quota = services.quota
    if quota is None:
        return work.deployment, None
    deployment, at = work.deployment, work.not_before
    if deployment not in quota.deployments:  # no slot reserved (or from another configuration): take one now
        slot = quota.slot_for(count)
        deployment, at = slot.deployment, slot.at
    delay = at - time.time()
    if delay > 0:
        time.sleep(delay)
    return deployment, _Gate(quota, deployment)


class _Gate:
    """Run by the HTTP client as an image request leaves: waits for the quota's turn (ImageQuota.send_turn)."""

    def __init__(self, quota: ImageQuota, deployment: str) -> None:
        self.quota, self.deployment = quota, deployment
        self.turn: float | None = None  # the quota's turn the request last left at (Unix seconds)
        self.retry_after: float | None = None  # set after a 429 at a window's edge: the next pass is its retry
        self.left: float | None = None  # time.monotonic() when the request last left
        self.left_at: float | None = None  # the same, in Unix seconds

    def __call__(self) -> None:
        if self.retry_after is not None and self.turn is not None:
            # The rejected request's place: its turn, or when it really left if later (left_late recorded that).
            rejected = max(self.turn, self.left_at or 0.0)
            self.turn = self.quota.retry_turn(self.deployment, self.retry_after, rejected)
        else:
            self.turn = self.quota.send_turn(self.deployment)
        delay = self.turn - time.time()
        if delay > 0:
            time.sleep(delay)
        self.left = time.monotonic()
        left = self.left_at = time.time()
        if left - self.turn > LATE_SHARE * interval_s(self.quota.deployments[self.deployment]):
            # Recorded beside the request, not before it: a write here would make it later still.
            threading.Thread(
                target=_record_late, args=(self.quota, self.deployment, self.turn, left), daemon=True
            ).start()


# A request that leaves later than its turn by more than this share of the quota's spacing (half
# its slack) has the schedule corrected, so the next one is not sent too soon after it.
LATE_SHARE = (SLACK - 1) / 2


def _record_late(quota: ImageQuota, deployment: str, turn: float, left: float) -> None:
    try:
        quota.left_late(deployment, turn, left)
    except Exception:  # the schedule could not be read or written: the margin covers it, as before
        log.warning("The image quota's schedule did not take a late departure", exc_info=True)


# A 429 whose retry-after is this short is a rate-limit window missed by a call's jitter, not a
# busy deployment: the request is tried again at once, at the quota's next turn (see _draw).
WINDOW_EDGE_S = 2.0


def _at_a_window_edge(services: Services, exc: TransientServiceError) -> bool:
    return (
        exc.code == "quota_exhausted"
        and services.quota is not None
        and exc.retry_after is not None
        and exc.retry_after <= WINDOW_EDGE_S
    )


def _draw(
    services: Services, work: GenerateInput, drawing: list[int], records: dict[int, budget.CallRecord]
) -> dict[int, Variation]:
    """One image request for the variations `drawing`: the call, its settlement, and each image stored or rated."""
    request, generator = work.request, services.providers.generator
    source = services.storage.get(work.prepared.image.container, work.prepared.image.name)
    mask = services.storage.get(work.prepared.mask.container, work.prepared.mask.name) if work.prepared.mask else None
    references = [(services.storage.get(r.image.container, r.image.name), r.role) for r in work.prepared.references]
    deployment, gate = _wait_for_slot(services, work, len(drawing))
    shown = deployment if len(services.settings.image_deployments) > 1 else None
    options = _options(services, work, drawing)

    def settle(index: int, code: str | None, message: str) -> None:
        if generator.paid:
            budget.settle(
                services.storage, request.job_id, f"image-{index}", records[index], code=code, message=message
            )

    def call() -> list[bytes]:
        return generator.generate_batch(
            source,
            work.composition.output_prompt,
            request=request.prompt,
            mode=request.mode,
            landscape=get_profile(request.profile).landscape,
            indices=drawing,
            deployment=deployment,
            before_send=gate,
            mask=mask,
            references=references,
            options=options,
        )

    settled = False  # whether the attempt that failed is already recorded
    try:
        try:
            images = call()
        except TransientServiceError as exc:
            if not _at_a_window_edge(services, exc):
                raise
            # A 429 that asks for a moment (the window missed by a call's jitter): this request
            # leaves again as soon as the window has room, in its own turn (ImageQuota.retry_turn),
            # its second and last attempt. Going to the back of the queue instead would leave its
            # turn unused.
            if gate is not None:
                gate.retry_after = exc.retry_after
            for index in drawing:
                settle(index, exc.code, str(exc))
            settled = True
            if not all(records[index].has_room for index in drawing):
                raise
            for index in drawing:
                records[index] = budget.take(services.storage, request.job_id, f"image-{index}") or records[index]
            settled = False
            images = call()
    except ProviderError as exc:
        transient = isinstance(exc, TransientServiceError) and exc.retryable
        retry_after = exc.retry_after if isinstance(exc, TransientServiceError) else None
        if exc.code == "quota_exhausted" and services.quota is not None:
            # Another client of the deployment, or a window the schedule missed: no slot of it before then.
            services.quota.hold_off(deployment, retry_after if retry_after is not None else 5.0)
        failed: dict[int, Variation] = {}
        for index in drawing:
            if not settled:
                settle(index, exc.code, str(exc))
            failed[index] = Variation(
                index=index,
                status="refused" if isinstance(exc, ContentRefused) else "failed",
                provider=generator.name,
                reason=str(exc),
                code=exc.code,
                retryable=transient and generator.paid and records[index].has_room,
                retry_after_s=retry_after,
                deployment=shown,
            )
        return failed
    if services.quota is not None and gate is not None and gate.left is not None:
        # How long the service took: it sizes the local runtime's image workers (ImageQuota.concurrency).
        services.quota.record_latency(deployment, time.monotonic() - gate.left)
    drawn: dict[int, Variation] = {}
    for k, index in enumerate(drawing):
        if k >= len(images):  # the service sent fewer images than asked: this one was not drawn
            reason = "The image model answered with fewer images than asked."
            settle(index, "service_incomplete", reason)
            drawn[index] = Variation(
                index=index,
                status="failed",
                provider=generator.name,
                reason=reason,
                code="service_incomplete",
                retryable=generator.paid and records[index].has_room,
                deployment=shown,
            )
            continue
        settle(index, None, "")
        if mask is not None:  # a region edit: every pixel outside the mask is the source's (masks.py)
            images[k] = _kept_outside(source, images[k], mask)
        images[k] = _in_format(images[k], options)
        if services.providers.moderator.paid and request.profile == "kids":
            drawn[index] = _rate_and_store(services, work, index, images[k])
        else:
            ref = _store_variation(services, work, index, images[k])
            drawn[index] = Variation(index=index, status="succeeded", image=ref, provider=generator.name)
        drawn[index] = drawn[index].model_copy(update={"deployment": shown})
    return drawn


def _options(services: Services, work: GenerateInput, drawing: list[int]) -> ImageOptions:
    """The job's image options, with previews: each partial image is stored as the variation's preview."""
    options = image_options(work.request)
    count = services.settings.preview_images
    if count == 0:
        return options
    job_id = work.request.job_id

    def on_partial(k: int, _number: int, image: bytes) -> None:
        if k < len(drawing):
            try:
                services.storage.put(WORK, preview_name(job_id, drawing[k]), image, content_type_of(image))
            except Exception:  # a preview is a courtesy: the image still comes  # noqa: BLE001
                log.warning("Job %s: a preview of variation %s was not stored", job_id, drawing[k], exc_info=True)

    return dataclasses.replace(options, partial_images=count, on_partial=on_partial)


def _in_format(image: bytes, options: ImageOptions) -> bytes:
    """The image in the format the job asked for (a generator or the mask's composite may give the other one)."""
    wanted = "JPEG" if options.output_format == "jpeg" else "PNG"
    if sniff(image) == wanted:
        return image
    picture = open_prepared(image)
    if wanted == "PNG":
        return encode_png(picture)
    out = io.BytesIO()
    quality = options.output_compression if options.output_compression is not None else JPEG_QUALITY
    picture.convert("RGB").save(out, "JPEG", quality=max(1, min(95, quality)), optimize=True)
    return out.getvalue()


def _kept_outside(source: bytes, image: bytes, mask: bytes) -> bytes:
    """The drawn image with the source laid back wherever the mask keeps it, at the source's size (PNG)."""
    return encode_png(composite_back(open_rgb(source), open_prepared(image), mask))


def _store_variation(services: Services, work: GenerateInput, index: int, image: bytes) -> BlobRef:
    generator = services.providers.generator
    content_type = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
    name = variation_name(work.request.job_id, index)
    return services.storage.put(
        OUTPUTS, name, image, content_type, {"provider": generator.name, "job": work.request.job_id}
    )


def _refused_image(provider: str, index: int, record: ModerationRecord) -> Variation:
    reason = f"{record.reason} The image is not shown. Try again, or change the prompt."
    return Variation(index=index, status="refused", provider=provider, reason=reason, code="moderation_refused")


def _rate_and_store(services: Services, work: GenerateInput, index: int, image: bytes) -> Variation:
    """Have Content Safety rate a kids image before it becomes a result: a flagged one is never stored in outputs.

    While the rating has not answered, the image waits in work/ (unrated), so the second attempt
    rates the same image instead of paying for a new one; once rated, that copy is emptied.
    """
    request = work.request
    generator, moderator = services.providers.generator, services.providers.moderator
    held = unrated_name(request.job_id, index)
    call = f"moderation-image-{index}"
    record = budget.take(services.storage, request.job_id, call)
    if record is None:
        last = budget.read(services.storage, request.job_id, call)
        code = last.last_code or "service_unavailable"
        reason = budget.spent_message(last, "content moderation")
        return Variation(index=index, status="failed", provider=generator.name, reason=reason, code=code)
    try:
        verdict = moderator.check_image(image, "kids", what=f"image (variation {index + 1})")
    except ProviderError as exc:
        budget.settle(services.storage, request.job_id, call, record, code=exc.code, message=str(exc))
        transient = isinstance(exc, TransientServiceError) and exc.retryable
        retryable = transient and record.has_room
        if retryable:
            services.storage.put(WORK, held, image, "image/png")
        else:
            _forget_unrated(services, held)
        return Variation(
            index=index,
            status="refused" if isinstance(exc, ContentRefused) else "failed",
            provider=generator.name,
            reason=str(exc),
            code=exc.code,
            retryable=retryable,
            retry_after_s=exc.retry_after if isinstance(exc, TransientServiceError) else None,
        )
    budget.settle(services.storage, request.job_id, call, record, code=None, message="")
    rated = _as_record(f"image-{index}", "image", verdict)
    _save_record(services, request.job_id, rated)
    _forget_unrated(services, held)
    if not verdict.allowed:
        log.info("Job %s: variation %s refused by %s: %s", request.job_id, index, verdict.provider, verdict.reason)
        return _refused_image(generator.name, index, rated)
    ref = _store_variation(services, work, index, image)
    return Variation(index=index, status="succeeded", image=ref, provider=generator.name)


def _forget_unrated(services: Services, name: str) -> None:
    """Empty the held copy of an image once rated (storage has no delete; an empty blob holds nothing)."""
    if services.storage.info(WORK, name) is not None:
        services.storage.put(WORK, name, b"", "image/png")


def _outcome(variations: list[Variation], n: int) -> tuple[str, str | None, str | None, bool]:
    """(status, code, message, partial) of a job whose generations ran.

    Some delivered and some not: the job succeeded, partially, and says why the others are missing.
    None delivered: refused when every one was refused, else failed, with the first failure's code.
    """
    delivered = [v for v in variations if v.status == "succeeded"]
    missing = [v for v in variations if v.status != "succeeded"]
    if len(variations) < n:
        return "failed", "internal", f"Only {len(variations)} of {n} variations were attempted.", False
    if not missing:
        return "succeeded", None, None, False
    first = next((v for v in missing if v.status == "failed"), missing[0])
    refused = sum(1 for v in missing if v.status == "refused")
    failed = len(missing) - refused
    parts = [f"{count} of {n} {what}" for count, what in ((refused, "were refused"), (failed, "failed")) if count]
    summary = " and ".join(parts)
    why = _with_next_step(first.reason or "", first.code)
    if delivered:
        return "succeeded", first.code, f"{len(delivered)} of {n} variations delivered; {summary}: {why}", True
    status = "refused" if failed == 0 else "failed"
    return status, first.code, f"{summary}: {why}", False


# A provider's message that already says what to do (and whom it falls to) needs no second advice.
_GIVES_NEXT_STEP = re.compile(r"\b(should|must|Try again|Send|Change|Choose|Upload|Export|Fix)\b")


def _with_next_step(reason: str, code: str | None) -> str:
    """The reason, followed by the code's next step unless the reason already gives it."""
    step = advice(code)
    if not step or _GIVES_NEXT_STEP.search(reason):
        return reason
    return f"{reason.rstrip()} {step}" if reason.rstrip().endswith((".", ")", "!")) else f"{reason}. {step}"


def persist(services: Services, job: JobRecord) -> Manifest:
    """Write outputs/{job}/manifest.json: last, so its presence means the job is over."""
    request, prepared, found, composition = job.request, job.prepared, job.caption, job.composition
    variations, failure = job.variations, job.problem

    # A succeeded manifest never points at a missing image.
    checked: list[Variation] = []
    for v in variations:
        if v.status == "succeeded" and (v.image is None or services.storage.info(OUTPUTS, v.image.name) is None):
            v = v.model_copy(update={"status": "failed", "reason": "The stored image is missing.", "code": "internal"})
        checked.append(v)

    status: str
    code: str | None
    message: str | None
    partial = False
    if failure is not None:
        status, code, message = failure.status, failure.code, failure.message
    elif composition is not None and composition.verdict == "refuse":
        code = composition.code or ("word_check" if composition.provider == "word-check" else "composer_refused")
        status, message = "refused", composition.reason
    else:
        status, code, message, partial = _outcome(checked, request.n)
        if status == "succeeded" and not partial and services.providers.generator.name == OfflineStylizer.name:
            # The headline must not promise what the offline painter could not draw: it says so.
            limits = offline_limits(request.prompt, request.mode, image_options(request))
            if limits:
                code, message = "offline_limited", f"{limits} {advice('offline_limited')}"

    providers = dict(services.providers.names())
    if composition is not None:
        providers["compose"] = composition.provider
    if found is not None:
        providers["caption"] = found.provider
    paid = _paid_calls(services, request.job_id)
    prices = services.settings.prices_usd
    kinds = ("caption", "compose", "image", "moderation")
    quality = request.output.quality or services.settings.image_quality
    each = {kind: image_price(prices, quality) if kind == "image" else prices.get(kind, 0.0) for kind in kinds}
    cost = sum(getattr(paid, kind).billed * each[kind] for kind in kinds)
    manifest = Manifest(
        job_id=request.job_id,
        status=status,  # type: ignore[arg-type]
        code=code,
        message=message,
        partial=partial,
        request=request,
        source=prepared,
        caption=found,
        composition=composition,
        variations=checked,
        providers=providers,
        paid_calls=paid,
        moderation=_moderation_records(services, request.job_id),
        estimated_cost_usd=round(cost, 6),
        finished_at=job.finished_at,
        parent=request.parent,
        action=request.action,
    )
    body = json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=False).encode("utf-8")
    log.info(
        "Job %s ended %s%s (code %s): %s",
        request.job_id,
        status,
        " (partial)" if partial else "",
        code,
        message or "",
        extra={"varia_manifest": manifest},
    )
    try:
        services.storage.put(OUTPUTS, manifest_name(request.job_id), body, "application/json")
    except (StorageFull, StorageReadOnly) as exc:
        # The manifest cannot be stored: the job's outcome (Durable keeps it) says why, with the code.
        _storage_fault("saving", request.job_id, exc)
        manifest = manifest.model_copy(update={"status": "failed", "code": exc.code, "message": str(exc)})
    counts = {kind: getattr(paid, kind) for kind in kinds}
    telemetry.record_job(manifest.status, manifest.code, request.origin, counts, each)
    return manifest


def _paid_calls(services: Services, job_id: str) -> PaidCalls:
    """What the spend budget recorded for the job: attempts and deliveries by kind of call."""
    counts = {"caption": CallCount(), "compose": CallCount(), "image": CallCount(), "moderation": CallCount()}
    for call, record in budget.tally(services.storage, job_id).items():
        count = counts[call.split("-", 1)[0]]
        count.attempted += record.attempted
        count.rejected += record.rejected
        count.delivered += int(record.delivered)
    return PaidCalls(**counts)


def _json_step(
    contract: type[BaseModel], step: Callable[[Services, Any], BaseModel]
) -> Callable[[Services, JSON], JSON]:
    """The step as Durable calls it: its contract validated from JSON, its result dumped to JSON."""

    def run(services: Services, payload: JSON) -> JSON:
        model = contract.model_validate(payload)
        try:
            return step(services, model).model_dump(mode="json")
        except (StorageFull, StorageReadOnly) as exc:
            return _storage_fault(_STAGES[step.__name__], _job_id_of(model), exc).model_dump(mode="json")

    run.__name__ = run.__qualname__ = step.__name__
    run.__doc__ = step.__doc__
    return run


# --- Storage faults: a full or read-only store ends the job, with the fault's code ---------------
# Retrying cannot cure them (unlike an unreachable store, which raises so Durable retries), so a
# step that meets one returns a Problem carrying the code and the storage's message, logged with
# the job id; persist then writes the failed manifest if storage still allows it.

_STAGES = {
    "prepare": "preparing",
    "caption": "captioning",
    "compose": "composing",
    "reserve": "generating",
    "persist": "saving",
}


def _job_id_of(model: BaseModel) -> str:
    if isinstance(model, JobRequest):
        return model.job_id
    if isinstance(model, PreparedImage):
        return job_of(model.image.name)  # work/{job}/source
    if isinstance(model, ReserveInput):
        return model.job_id
    request = getattr(model, "request", None)
    return request.job_id if isinstance(request, JobRequest) else "unknown"


def _storage_fault(stage: str, job_id: str, exc: StorageFull | StorageReadOnly) -> Problem:
    log.error("Job %s: %s while %s: %s", job_id, exc.code, stage, exc)
    return problem("failed", exc.code, stage, str(exc))


def _generate_json(services: Services, payload: JSON) -> JSON:
    """`generate` from JSON: a payload that does not fit its contract is a failed variation, not a raise."""
    try:
        work = GenerateInput.model_validate(payload)
    except ValueError as exc:
        index = payload.get("index")
        index = index if isinstance(index, int) else 0
        log.error("generate got a payload outside its contract: %s", exc)
        reason = f"the step's input did not fit its contract ({exc.__class__.__name__})"
        failed = Variation(index=index, status="failed", provider="unknown", reason=reason)
        return Generated(variations=[failed]).model_dump(mode="json")
    return Generated(variations=generate_request(services, work)).model_dump(mode="json")


def _job_id_in(payload: JSON) -> str | None:
    """The job a step's JSON input belongs to: its own or its request's job id, else its image's folder."""
    for holder in (payload, payload.get("request")):
        if isinstance(holder, dict) and isinstance(holder.get("job_id"), str):
            return str(holder["job_id"])
    image = payload.get("image")
    return job_of(image["name"]) if isinstance(image, dict) and isinstance(image.get("name"), str) else None


STEPS: dict[str, Callable[[Services, JSON], JSON]] = {
    "prepare": _json_step(JobRequest, prepare),
    "caption": _json_step(PreparedImage, caption),
    "compose": _json_step(ComposeInput, compose),
    "reserve": _json_step(ReserveInput, reserve),
    "generate": _generate_json,
    "persist": _json_step(JobRecord, persist),
}

# Each step in a span of its own, its job current for every span and log record it makes.
STEPS = {
    name: telemetry.traced_step(name, _STAGES.get(name, "generating"), step, _job_id_in) for name, step in STEPS.items()
}


def run_step(name: str, payload: JSON | str) -> JSON:
    """Entry point of the activity functions: the process-wide services, JSON in, JSON out."""
    data = json.loads(payload) if isinstance(payload, str) else payload
    return STEPS[name](get_services(), data)
