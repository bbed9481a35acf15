"""The HTTP API a front end uses: start a job, follow it, fetch its images.

    POST /api/variations              multipart (image, prompt, profile, n, mode, force) or JSON
                                      ({"image": base64, "prompt": ...}); 202 with job id and status URL
    GET  /api/variations/{id}         stage, progress, caption, output prompt, image links, error
    GET  /api/variations/{id}/images/{which}   "source" or a variation index, served by the app

Images reach the browser through the app, never through Durable's management URLs (which
carry a key that can terminate instances). Handlers are plain async functions over a
`JobClient` and `Services`, so tests and the local server call them without the host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Any

import azure.functions as func

from shared.adapters.services import Services
from shared.adapters.storage import OUTPUTS, WORK, BlobNotFound
from shared.config import Settings
from shared.core.images import InvalidImage, check_header
from shared.core.jobs import (
    JobClient,
    RequestError,
    check_options,
    clean_prompt,
    is_job_id,
    request_for_upload,
    start_job,
)
from shared.core.models import JobRequest, Manifest
from shared.core.steps import delivered_so_far, manifest_name, variation_name

API_PREFIX = "/api/variations"


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False), status_code=status, mimetype="application/json", headers=headers
    )


def _error(status: int, message: str) -> func.HttpResponse:
    return _json({"error": message}, status)


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def max_body_bytes(settings: Settings) -> int:
    """The largest request body an upload of the size limit can need: base64 JSON (4/3) plus form fields.

    Servers refuse a larger declared Content-Length before reading the body (the local server does).
    """
    return settings.max_upload_bytes * 4 // 3 + 65_536


def _read_upload(req: func.HttpRequest) -> tuple[bytes, dict[str, Any]]:
    """(image bytes, options) from a multipart form or a JSON body. Raises RequestError."""
    content_type = (req.headers.get("content-type") or "").lower()
    if content_type.startswith("multipart/form-data"):
        upload = req.files.get("image")
        if upload is None:
            raise RequestError("The form has no 'image' file field.")
        return upload.read(), {k: req.form.get(k) for k in ("prompt", "profile", "n", "mode", "force")}
    try:
        body = req.get_json()
    except ValueError:
        raise RequestError("Send multipart/form-data with an 'image' file, or JSON with a base64 'image'.") from None
    if not isinstance(body, dict) or not isinstance(body.get("image"), str):
        raise RequestError("The JSON body needs 'image' (base64) and 'prompt'.")
    try:
        data = base64.b64decode(body["image"].split(",", 1)[-1], validate=True)  # tolerate a data: URL prefix
    except (binascii.Error, ValueError):
        raise RequestError("'image' is not valid base64.") from None
    return data, {k: body.get(k) for k in ("prompt", "profile", "n", "mode", "force")}


def _accept_upload(req: func.HttpRequest, services: Services) -> JobRequest | func.HttpResponse:
    """Check an upload and store it in uploads/: the job it asks for, or the error response.

    Blocking work (parsing, Pillow, storage): the async handler runs it in a worker thread.
    """
    settings = services.settings
    limit = settings.max_upload_bytes
    declared = req.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes(settings):
        # Refuse by the declared size, before reading a body that can only be too large.
        return _error(413, f"The upload is larger than {limit // (1024 * 1024)} MB.")
    try:
        data, options = _read_upload(req)
        if len(data) > limit:
            return _error(413, f"The image is {len(data) / 1e6:.1f} MB; the limit is {limit // (1024 * 1024)} MB.")
        fmt, _w, _h = check_header(data)
        prompt = clean_prompt(str(options.get("prompt") or ""))
        profile, n, mode = check_options(settings, options.get("profile"), options.get("n"), options.get("mode"))
    except (RequestError, InvalidImage) as exc:
        return _error(400, str(exc))

    return request_for_upload(
        services.storage, data, fmt.lower(), prompt=prompt, profile=profile, n=n, mode=mode, origin="http",
        force=_truthy(options.get("force")),
    )  # fmt: skip


async def post_variation(req: func.HttpRequest, client: JobClient, services: Services) -> func.HttpResponse:
    accepted = await asyncio.to_thread(_accept_upload, req, services)
    if isinstance(accepted, func.HttpResponse):
        return accepted
    request = accepted
    created = await start_job(client, request)
    status_url = f"{API_PREFIX}/{request.job_id}"
    body = {"job_id": request.job_id, "status_url": status_url, "created": created}
    return _json(body, 202, {"Location": status_url})


def _manifest_view(manifest: Manifest) -> dict[str, Any]:
    job_id = manifest.job_id
    composition = manifest.composition
    return {
        "job_id": job_id,
        "stage": "done",
        "status": manifest.status,
        "message": manifest.message,
        "done": len([v for v in manifest.variations if v.status == "succeeded"]),
        "total": manifest.request.n,
        "prompt": manifest.request.prompt,
        "profile": manifest.request.profile,
        "caption": manifest.caption.text if manifest.caption else None,
        "output_prompt": composition.output_prompt if composition else None,
        "subtasks": composition.subtasks.model_dump() if composition else None,
        "providers": manifest.providers,
        "source_url": f"{API_PREFIX}/{job_id}/images/source" if manifest.source else None,
        "images": [
            {
                "index": v.index,
                "status": v.status,
                "reason": v.reason,
                "url": f"{API_PREFIX}/{job_id}/images/{v.index}" if v.status == "succeeded" else None,
            }
            for v in manifest.variations
        ],
        "manifest_url": f"{API_PREFIX}/{job_id}/images/manifest",
    }


def _stored_manifest(services: Services, job_id: str) -> Manifest | None:
    try:  # a finished job has its manifest; the page polls this, so one storage call, not two
        return Manifest.model_validate_json(services.storage.get(OUTPUTS, manifest_name(job_id)))
    except BlobNotFound:
        return None


async def get_variation(job_id: str, client: JobClient, services: Services) -> func.HttpResponse:
    if not is_job_id(job_id):
        return _error(404, "No such job: job ids look like 'http-' followed by 32 hex digits.")
    manifest = await asyncio.to_thread(_stored_manifest, services, job_id)
    if manifest is not None:
        return _json(_manifest_view(manifest))
    state = await client.status(job_id)
    if state is None:
        return _error(404, f"No job {job_id}.")
    progress = state.custom_status or {}
    if state.runtime_status in ("Failed", "Terminated"):
        return _json(
            {
                "job_id": job_id,
                "stage": "done",
                "status": "failed",
                "message": "The job stopped unexpectedly; send the image again with force=true.",
            }
        )
    stage, done = progress.get("stage", "queued"), progress.get("done", 0)
    if stage == "generating":
        # The orchestrator waits for a whole round at once; storage knows what is already drawn.
        done = max(done, await asyncio.to_thread(delivered_so_far, services.storage, job_id))
    return _json(
        {
            "job_id": job_id,
            "stage": stage,
            "status": "running",
            "done": done,
            "total": progress.get("total", 0),
            "message": None,
        }
    )


def get_image(job_id: str, which: str, services: Services) -> func.HttpResponse:
    if not is_job_id(job_id):
        return _error(404, "No such job.")
    if which == "manifest":
        container, name, mimetype = OUTPUTS, manifest_name(job_id), "application/json"
    elif which == "source":
        container, name, mimetype = WORK, f"{job_id}/source.png", "image/png"
    elif which.isdigit() and int(which) < 10:
        container, name, mimetype = OUTPUTS, variation_name(job_id, int(which)), "image/png"
    else:
        return _error(404, "Ask for 'source', 'manifest' or a variation index.")
    info = services.storage.info(container, name)
    if info is None:
        return _error(404, f"Job {job_id} has no {which} (yet).")
    body = services.storage.get(container, name)
    headers = {"Cache-Control": "private, max-age=3600", "ETag": info.etag, "X-Content-Type-Options": "nosniff"}
    return func.HttpResponse(body, status_code=200, mimetype=info.content_type or mimetype, headers=headers)
