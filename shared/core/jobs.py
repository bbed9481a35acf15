"""Starting jobs: deterministic job ids, requests from blobs and uploads, and the start-once rule.

A job id is a hash of what makes a job the same job, so a duplicate trigger (Event Grid delivers
at least once, a user double-clicks) finds the existing job instead of paying for a second one.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from shared import telemetry
from shared.adapters.services import load_presets
from shared.adapters.storage import UPLOADS, Storage, check_blob_name
from shared.config import Settings
from shared.core.blobs import upload_name
from shared.core.images import InvalidImage, check_header, strip_metadata
from shared.core.masks import check_mask
from shared.core.models import (
    MAX_PROMPT_CHARS,
    MAX_REFERENCES,
    BlobRef,
    JobRequest,
    Mode,
    Origin,
    OutputOptions,
    Profile,
    Reference,
    ReferenceRole,
)
from shared.core.orchestrator import ORCHESTRATOR_NAME
from shared.core.safety import PROFILES

JOB_ID_PATTERN = re.compile(r"^(blob|http|cli)-[0-9a-f]{32}$")


class RequestError(ValueError):
    """The job request itself is wrong (prompt, profile, n, ...): the message says what to change."""


class MaskInvalid(RequestError):
    """The region edit's mask cannot be used: the message says what to send instead."""

    code = "mask_invalid"


class ReferenceInvalid(RequestError):
    """A reference picture cannot be used (not an image, too many, an unknown role, mode=generate)."""

    code = "reference_invalid"


PROFILE_LABELS = {"kids": "classroom (kids)", "general": "general"}


class ProfileEnforced(RequestError):
    """The request named a profile other than the one VARIA_ENFORCED_PROFILE locks every job to."""

    code = "profile_enforced"

    def __init__(self, enforced: str, requested: str) -> None:
        self.enforced, self.requested = enforced, requested
        super().__init__(self.message(f"Send the request without a profile, or with profile={enforced}"))

    def message(self, what_to_send: str) -> str:
        """Which profile is locked, by what, and (`what_to_send`) how to send the job instead."""
        return (
            f"The {PROFILE_LABELS.get(self.enforced, self.enforced)} profile is enforced by this app's settings "
            f"(VARIA_ENFORCED_PROFILE={self.enforced}), so a job cannot run under {self.requested!r}. "
            f"{what_to_send}; only whoever runs Varia can change the setting."
        )


class JobAlreadyExists(RuntimeError):
    """Another trigger started the same job id first."""


@dataclass(frozen=True)
class JobState:
    """What the Durable runtime knows of a job (our view, independent of the client used)."""

    job_id: str
    runtime_status: str  # Pending, Running, Completed, Failed, Terminated, ...
    custom_status: dict[str, Any] | None
    output: dict[str, Any] | None


class JobClient(Protocol):
    """Starts and looks up orchestrations: the Durable client in Azure, the local runtime elsewhere."""

    async def status(self, job_id: str) -> JobState | None: ...

    async def start(self, request: JobRequest) -> None: ...


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def blob_job_id(container: str, name: str, etag: str) -> str:
    """One job per blob version: a re-upload (new etag) is a new job, a duplicate event is not."""
    return "blob-" + _digest(container, name, etag.strip('"'))


def request_job_id(
    origin: Origin,
    image_sha256: str,
    prompt: str,
    profile: str,
    n: int,
    mode: str,
    nonce: str = "",
    mask_sha256: str = "",
    references: tuple[str, ...] = (),
    output: str = "",
) -> str:
    """Identical image + prompt + options (+ mask) give the same job, unless the caller forces a new one (nonce)."""
    parts = (image_sha256, prompt, profile, str(n), mode, nonce) + ((f"mask:{mask_sha256}",) if mask_sha256 else ())
    parts += tuple(f"reference:{r}" for r in references)  # "role:sha256", in order
    parts += (output,) if output else ()  # OutputOptions.job_id_part(): "" for the defaults
    return f"{origin}-" + _digest(*parts)


def is_job_id(value: str) -> bool:
    return bool(JOB_ID_PATTERN.fullmatch(value))


def clean_prompt(prompt: str) -> str:
    """The prompt as the composer will see it, or RequestError saying what is wrong with it."""
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in prompt):
        raise RequestError("The prompt contains control characters; send plain text.")
    cleaned = " ".join(prompt.split())
    if not cleaned:
        raise RequestError("The prompt is empty; say how the image should change, e.g. 'as a watercolour'.")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise RequestError(f"The prompt has {len(cleaned)} characters; the limit is {MAX_PROMPT_CHARS}.")
    return cleaned


def check_options(
    settings: Settings, profile: str | None, n: Any, mode: str | None, *, refuse_other_profile: bool = True
) -> tuple[Profile, int, Mode]:
    """Validated (profile, n, mode), with the settings' defaults for what is not given.

    With VARIA_ENFORCED_PROFILE set, the profile is always the enforced one. A request that names
    another is refused with ProfileEnforced, so its sender knows (the HTTP API and the CLI), or,
    with `refuse_other_profile=False`, runs under the enforced profile (a blob drop, which has
    nobody to answer; its manifest records both).
    """
    if profile and profile not in PROFILES:
        raise RequestError(f"Unknown profile {profile!r}; use one of: {', '.join(PROFILES)}.")
    enforced = settings.enforced_profile
    if enforced and profile and profile != enforced and refuse_other_profile:
        raise ProfileEnforced(enforced, profile)
    profile = enforced or profile or settings.default_profile
    try:
        count = settings.default_variations if n in (None, "") else int(n)
    except (TypeError, ValueError):
        raise RequestError(f"n={n!r} is not a whole number.") from None
    if not 1 <= count <= settings.max_variations:
        raise RequestError(f"n={count} is out of range; ask for 1 to {settings.max_variations} variations.")
    mode = mode or "edit"
    if mode not in ("edit", "generate"):
        raise RequestError(f"Unknown mode {mode!r}; use 'edit' (keep the subject) or 'generate' (new scene).")
    return cast(Profile, profile), count, cast(Mode, mode)


def request_for_upload(
    storage: Storage,
    data: bytes,
    extension: str,
    *,
    prompt: str,
    profile: Profile,
    n: int,
    mode: Mode,
    origin: Origin,
    force: bool = False,
    filename: str | None = None,
    requested_profile: Profile | None = None,
    profile_enforced: bool = False,
    mask: bytes | None = None,
    references: Sequence[tuple[bytes, str]] = (),
    output: OutputOptions | None = None,
) -> JobRequest:
    """Keep an upload, stripped of its metadata, as uploads/{sha256}.{format}; describe its job (HTTP API and CLI).

    EXIF, GPS, XMP and the like are removed before anything is stored (`images.strip_metadata`),
    and the job id hashes what is stored plus the options, so the same request is the same job;
    `force` adds the time to the hash for a deliberate second run. Bytes that are not an image are
    kept as `uploads/{sha256}.{extension}`, for the prepare step to say what they are. An image
    that must be re-encoded to lose its metadata but cannot be decoded raises RequestError: it is
    not stored. Storage faults raise StorageError (see shared.adapters.storage). `profile` is the
    one the job runs under (from `check_options`); `requested_profile` the one the request named,
    and `profile_enforced` whether VARIA_ENFORCED_PROFILE chose it: both go into the manifest.
    A `mask` (a region edit) is checked (`masks.check_mask`) and kept beside the upload.
    """
    mask_ref = _store_mask(storage, mask, mode) if mask is not None else None
    kept_references = _store_references(storage, references, mode)
    try:
        stripped = strip_metadata(data)
    except InvalidImage as exc:
        shown = f"{filename}: " if filename else ""
        raise RequestError(f"{shown}{exc} Nothing was stored.") from None
    source = _keep_upload(storage, stripped.data, stripped.format, extension)
    digest = str(source.sha256)
    nonce = str(time.time_ns()) if force else ""
    mask_digest = mask_ref.sha256 or "" if mask_ref else ""
    return JobRequest(
        job_id=request_job_id(
            origin,
            digest,
            prompt,
            profile,
            n,
            mode,
            nonce,
            mask_digest,
            tuple(f"{r.role}:{r.image.sha256}" for r in kept_references),
            (output or OutputOptions()).job_id_part(),
        ),  # fmt: skip
        source=source,
        mask=mask_ref,
        references=kept_references,
        prompt=prompt,
        profile=profile,
        profile_enforced=profile_enforced,
        requested_profile=requested_profile,
        n=n,
        mode=mode,
        origin=origin,
        filename=filename,
        output=output or OutputOptions(),
    )


def _keep_upload(storage: Storage, data: bytes, fmt: str | None, extension: str) -> BlobRef:
    """Keep bytes as uploads/{sha256}.{extension}, named and typed by their image format when they have one."""
    if fmt is not None:
        extension = "jpg" if fmt == "JPEG" else fmt.lower()
    digest = hashlib.sha256(data).hexdigest()
    content_type = f"image/{fmt.lower()}" if fmt else "application/octet-stream"
    kept = storage.put(UPLOADS, upload_name(digest, extension), data, content_type)
    return BlobRef(container=UPLOADS, name=kept.name, etag=kept.etag, sha256=digest)


def _store_mask(storage: Storage, mask: bytes, mode: Mode) -> BlobRef:
    """Check a region edit's mask and keep it as uploads/{sha256}.png; RequestError says what is wrong."""
    if mode != "edit":
        raise MaskInvalid("A mask marks the part of your picture to change: send mode=edit with it, or no mask.")
    try:
        check_mask(mask)
    except InvalidImage as exc:
        raise MaskInvalid(f"{exc} Nothing was stored.") from None
    return _keep_upload(storage, mask, "PNG", "png")


def prompt_for_blob(name: str, metadata: Mapping[str, str], settings: Settings) -> tuple[str, str]:
    """(prompt, where it came from) for a blob dropped in `inputs`: metadata, folder preset, default preset."""
    lowered = {k.lower(): v for k, v in metadata.items()}
    # Blob metadata is ASCII-only, so non-English prompts arrive percent-encoded UTF-8.
    prompt = urllib.parse.unquote(lowered.get("prompt", ""))
    if prompt.strip():
        return prompt, "metadata"
    presets = load_presets()
    folder = name.split("/", 1)[0] if "/" in name else ""
    if folder in presets:
        return presets[folder], f"preset:{folder}"
    if settings.default_preset not in presets:
        raise RequestError(f"VARIA_DEFAULT_PRESET={settings.default_preset!r} is not a preset: {', '.join(presets)}.")
    return presets[settings.default_preset], f"preset:{settings.default_preset}"


def check_reference_role(role: str | None, number: int) -> ReferenceRole:
    """A reference's role ('style' when none is given), or ReferenceInvalid."""
    role = (role or "style").strip().lower()
    if role not in ("style", "subject"):
        raise ReferenceInvalid(
            f"Reference {number} has the role {role[:40]!r}; use 'style' (borrow its look) or 'subject' (put what it "
            "shows in the picture)."
        )
    return cast(ReferenceRole, role)


def _check_references_mode(count: int, mode: Mode) -> None:
    if count > MAX_REFERENCES:
        raise ReferenceInvalid(f"{count} references were sent; send at most {MAX_REFERENCES}.")
    if count and mode != "edit":
        raise ReferenceInvalid("References go with an edit of your picture: send mode=edit with them.")


def _store_references(storage: Storage, references: Sequence[tuple[bytes, str]], mode: Mode) -> list[Reference]:
    """Keep each reference like an upload (stripped of its metadata, uploads/{sha256}.{format})."""
    _check_references_mode(len(references), mode)
    kept = []
    for number, (data, role) in enumerate(references, start=1):
        checked_role = check_reference_role(role, number)
        try:
            check_header(data)
            stripped = strip_metadata(data)
        except InvalidImage as exc:
            raise ReferenceInvalid(f"Reference {number}: {exc} Nothing was stored.") from None
        kept.append(Reference(image=_keep_upload(storage, stripped.data, stripped.format, "png"), role=checked_role))
    return kept


# Blobs in these folders of the inputs container are masks and references that other blobs'
# metadata name, not pictures to vary: the blob trigger starts no job for them.
MASKS_FOLDER = "masks/"
REFERENCES_FOLDER = "references/"


def _blob_mask(container: str, name: str, metadata: Mapping[str, str], mode: Mode) -> BlobRef | None:
    """The mask blob a drop's metadata names (`mask`, a blob in the same container), if any."""
    named = urllib.parse.unquote(metadata.get("mask", "")).strip()
    if not named:
        return None
    if mode != "edit":
        raise MaskInvalid("The metadata names a mask, which marks the part of a picture to change: use mode=edit.")
    try:
        check_blob_name(named)
    except ValueError as exc:
        raise MaskInvalid(f"The metadata's mask {named[:80]!r} is not a blob name Varia reads: {exc}") from None
    if named == name:
        raise MaskInvalid("The metadata names the picture itself as its mask; name the mask blob, e.g. masks/sky.png.")
    return BlobRef(container=container, name=named)


def _blob_references(container: str, name: str, metadata: Mapping[str, str], mode: Mode) -> list[Reference]:
    """The reference blobs a drop's metadata names: `references` = "refs/a.jpg:style,refs/b.png:subject"."""
    listed = [item.strip() for item in urllib.parse.unquote(metadata.get("references", "")).split(",") if item.strip()]
    _check_references_mode(len(listed), mode)
    found = []
    for number, item in enumerate(listed, start=1):
        blob, _, role = (
            item.rpartition(":") if item.rsplit(":", 1)[-1].lower() in ("style", "subject") else (item, "", "")
        )
        try:
            check_blob_name(blob)
        except ValueError as exc:
            raise ReferenceInvalid(
                f"Reference {number} ({blob[:80]!r}) is not a blob name Varia reads: {exc}"
            ) from None
        if blob == name:
            raise ReferenceInvalid(
                f"Reference {number} is the picture itself; name another blob, e.g. references/style.jpg."
            )
        found.append(Reference(image=BlobRef(container=container, name=blob), role=check_reference_role(role, number)))
    return found


def request_from_blob(
    container: str, name: str, etag: str, metadata: Mapping[str, str], settings: Settings
) -> JobRequest:
    """The job for a blob version. Bad metadata raises RequestError; the caller still records a manifest."""
    lowered = {k.lower(): v for k, v in metadata.items()}
    prompt, prompt_origin = prompt_for_blob(name, metadata, settings)
    requested = lowered.get("profile") or None
    # An enforced profile applies whatever the metadata asks: a drop has nobody to refuse it to.
    profile, n, mode = check_options(
        settings, requested, lowered.get("n"), lowered.get("mode"), refuse_other_profile=False
    )
    return JobRequest(
        job_id=blob_job_id(container, name, etag),
        source=BlobRef(container=container, name=name, etag=etag),
        prompt=clean_prompt(prompt),
        prompt_origin=prompt_origin,
        profile=profile,
        profile_enforced=bool(settings.enforced_profile),
        requested_profile=cast(Profile, requested),
        n=n,
        mode=mode,
        origin="blob",
        filename=name,
        mask=_blob_mask(container, name, lowered, mode),
        references=_blob_references(container, name, lowered, mode),
    )


async def start_job(client: JobClient, request: JobRequest) -> bool:
    """Start the job unless it exists. True if this call started it. Safe under concurrent duplicates.

    Its span ("start job", with the job id) is the trigger's, and the parent of the job's trace:
    the Durable client passes the current trace context on to the orchestration.
    """
    with telemetry.job_span("start job", request.job_id, **{telemetry.ORIGIN: request.origin}) as span:
        if await client.status(request.job_id) is not None:
            created = False
        else:
            try:
                await client.start(request)
                created = True
            except JobAlreadyExists:
                created = False  # another delivery won the race between our status check and start
        if span is not None:
            span.set_attribute("varia.created", created)
        return created


class DurableJobClient:
    """JobClient over the Durable Functions client binding."""

    def __init__(self, client: Any) -> None:  # azure.durable_functions.DurableOrchestrationClient
        self._client = client

    async def status(self, job_id: str) -> JobState | None:
        status = await self._client.get_status(job_id)
        if status is None or status.runtime_status is None:
            return None
        output = status.output if isinstance(status.output, dict) else None
        custom = status.custom_status if isinstance(status.custom_status, dict) else None
        if isinstance(status.custom_status, str):
            custom = json.loads(status.custom_status)
        return JobState(job_id, status.runtime_status.value, custom, output)

    async def start(self, request: JobRequest) -> None:
        try:
            await self._client.start_new(ORCHESTRATOR_NAME, request.job_id, request.model_dump(mode="json"))
        except Exception as exc:
            if "already exists" in str(exc).lower():
                raise JobAlreadyExists(request.job_id) from exc
            raise
