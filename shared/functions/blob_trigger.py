"""Jobs from images dropped into the `inputs` container.

In Azure the trigger is Event Grid based (the only blob trigger Flex Consumption supports).
Azurite emits no Event Grid events, so in Development a polling twin of the trigger is
registered as well. Both receive a `BlobClient` (an SDK-type binding): the host hands over a
reference, not the content, and the trigger reads only the blob's properties (size, etag,
metadata) in one call. The prepare activity reads the bytes, and only of a blob within the size
limit. The job id hashes `container/name@etag`, so Event Grid's duplicate deliveries (and both
triggers seeing the same blob) make one job; a re-upload (new etag) makes a new one.

The etag comes from that properties call, never from the trigger's metadata, where the host may
serialize it as a string or as an empty object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.adapters.services import Services, get_services
from shared.adapters.storage import check_blob_name
from shared.core.jobs import (
    MASKS_FOLDER,
    REFERENCES_FOLDER,
    DurableJobClient,
    JobClient,
    MaskInvalid,
    ReferenceInvalid,
    RequestError,
    blob_job_id,
    request_from_blob,
    start_job,
)
from shared.core.models import BlobRef, JobRecord, JobRequest, Problem
from shared.core.steps import persist

log = logging.getLogger("varia.blob_trigger")
MB = 1024 * 1024


async def handle_blob(
    container: str,
    name: str,
    etag: str | None,
    metadata: Mapping[str, str] | None,
    client: JobClient,
    services: Services,
    size: int | None = None,
) -> str | None:
    """Start the job for one blob version; returns the job id (None if the blob is gone).

    Storage calls run in a worker thread: this coroutine shares the worker's one event loop.
    """
    try:
        check_blob_name(name)
    except ValueError as exc:
        # A name Varia will not read (path tricks, control characters): record why, touch nothing.
        job_id = blob_job_id(container, name, etag or "")
        await asyncio.to_thread(
            _record_failure, services, job_id, container, name, etag or "", "invalid_blob_name", str(exc)
        )
        return job_id
    if name.startswith((MASKS_FOLDER, REFERENCES_FOLDER)):
        log.info("Blob %s/%s is a mask or a reference that other drops name: no job of its own.", container, name)
        return None
    if etag is None or metadata is None:
        info = await asyncio.to_thread(services.storage.info, container, name)
        if info is None:
            log.warning("Blob %s/%s vanished before its job started; nothing to do.", container, name)
            return None
        etag, metadata, size = etag or info.etag, info.metadata if metadata is None else metadata, info.size
    limit = services.settings.max_upload_bytes
    if size is not None and size > limit:
        # Refused from the properties: not a byte of it is read. The blob stays where it is.
        job_id = blob_job_id(container, name, etag)
        message = (
            f"{name} is {size / MB:.1f} MB; the limit is {limit // MB} MB. "
            "Upload a smaller image (the original was left unchanged)."
        )
        await asyncio.to_thread(_record_failure, services, job_id, container, name, etag, "image_too_large", message)
        log.warning("Blob %s/%s refused: %s", container, name, message)
        return job_id
    try:
        request = await asyncio.to_thread(request_from_blob, container, name, etag, metadata, services.settings)
    except RequestError as exc:
        # Bad metadata still ends in a manifest that says what to fix; the blob stays where it is.
        job_id = blob_job_id(container, name, etag)
        code = exc.code if isinstance(exc, MaskInvalid | ReferenceInvalid) else "invalid_request"
        await asyncio.to_thread(_record_failure, services, job_id, container, name, etag, code, f"{name}: {exc}")
        return job_id
    if await start_job(client, request):
        log.info("Started job %s for %s/%s (%s)", request.job_id, container, name, request.prompt_origin)
    else:
        log.info("Job %s for %s/%s exists already: duplicate event ignored", request.job_id, container, name)
    return request.job_id


def _record_failure(
    services: Services, job_id: str, container: str, name: str, etag: str, code: str, message: str
) -> None:
    """A failed manifest for a blob that never became a job, so the drop still gets an answer."""
    placeholder = JobRequest(
        job_id=job_id, source=BlobRef(container=container, name=name, etag=etag), prompt="(none)", origin="blob"
    )
    problem = Problem(status="failed", code=code, stage="queued", message=message)
    persist(services, JobRecord(request=placeholder, problem=problem, finished_at=datetime.now(UTC).isoformat()))


async def from_blob_client(blob: Any, client: Any) -> str | None:
    """The blob trigger's body: one properties call (size, etag, metadata); the bytes stay in storage.

    `blob` is the `azure.storage.blob.BlobClient` the SDK-type binding built; `client` is the
    Durable client binding's JSON.
    """
    from azure.core.exceptions import ResourceNotFoundError

    services = await asyncio.to_thread(get_services)
    try:
        props = await asyncio.to_thread(blob.get_blob_properties)
    except ResourceNotFoundError:
        log.warning("Blob %s/%s vanished before its job started; nothing to do.", blob.container_name, blob.blob_name)
        return None
    return await handle_blob(
        blob.container_name,
        blob.blob_name,
        props.etag,
        dict(props.metadata or {}),
        DurableJobClient(client),
        services,
        size=props.size,
    )
