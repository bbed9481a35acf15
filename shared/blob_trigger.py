"""Jobs from images dropped into the `inputs` container.

In Azure the trigger is Event Grid based (the only blob trigger Flex Consumption supports).
Azurite emits no Event Grid events, so in Development a polling twin of the trigger is
registered as well. Both only read the blob's name, etag and metadata: the prepare activity
reads the bytes. The job id hashes `container/name@etag`, so Event Grid's duplicate deliveries
(and both triggers seeing the same blob) make one job; a re-upload (new etag) makes a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from .jobs import DurableJobClient, JobClient, RequestError, blob_job_id, request_from_blob, start_job
from .models import BlobRef, JobRequest
from .services import Services, get_services
from .steps import persist
from .storage import check_blob_name

log = logging.getLogger("varia.blob_trigger")


async def handle_blob(
    container: str,
    name: str,
    etag: str | None,
    metadata: Mapping[str, str] | None,
    client: JobClient,
    services: Services,
) -> str | None:
    """Start the job for one blob version; returns the job id (None if the blob is gone)."""
    try:
        check_blob_name(name)
    except ValueError as exc:
        # A name Varia will not read (path tricks, control characters): record why, touch nothing.
        job_id = blob_job_id(container, name, etag or "")
        _record_failure(services, job_id, container, name, etag or "", str(exc))
        return job_id
    if etag is None or metadata is None:
        info = services.storage.info(container, name)
        if info is None:
            log.warning("Blob %s/%s vanished before its job started; nothing to do.", container, name)
            return None
        etag, metadata = etag or info.etag, info.metadata if metadata is None else metadata
    try:
        request = request_from_blob(container, name, etag, metadata, services.settings)
    except RequestError as exc:
        # Bad metadata still ends in a manifest that says what to fix; the blob stays where it is.
        job_id = blob_job_id(container, name, etag)
        _record_failure(services, job_id, container, name, etag, f"{name}: {exc}")
        return job_id
    if await start_job(client, request):
        log.info("Started job %s for %s/%s (%s)", request.job_id, container, name, request.prompt_origin)
    else:
        log.info("Job %s for %s/%s exists already: duplicate event ignored", request.job_id, container, name)
    return request.job_id


def _record_failure(services: Services, job_id: str, container: str, name: str, etag: str, message: str) -> None:
    """A failed manifest for a blob that never became a job, so the drop still gets an answer."""
    placeholder = JobRequest(
        job_id=job_id, source=BlobRef(container=container, name=name, etag=etag), prompt="(none)", origin="blob"
    )
    problem = {"status": "failed", "stage": "queued", "message": message}
    finished = datetime.now(UTC).isoformat()
    persist(services, {"request": placeholder.model_dump(mode="json"), "problem": problem, "finished_at": finished})


def _split(path: str | None) -> tuple[str, str]:
    container, _, name = (path or "").partition("/")
    return container, name


def _etag(properties: Any) -> str | None:
    if isinstance(properties, Mapping):
        value = properties.get("ETag") or properties.get("Etag") or properties.get("etag")
        return str(value) if value else None
    return None


async def from_trigger(blob: func.InputStream, client: Any) -> None:
    """The blob trigger's body: name, etag and metadata from the binding; the bytes stay in storage."""
    container, name = _split(blob.name)
    # InputStream carries the trigger's metadata and properties (typed loosely by azure-functions).
    raw_metadata, properties = getattr(blob, "metadata", None), getattr(blob, "blob_properties", None)
    metadata = raw_metadata if isinstance(raw_metadata, Mapping) else None
    await handle_blob(container, name, _etag(properties), metadata, DurableJobClient(client), get_services())
