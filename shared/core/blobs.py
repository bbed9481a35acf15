"""The one place blob names are written: where each thing Varia stores lives, by container.

- `uploads/{sha256}.{ext}`: an HTTP or CLI upload, stripped of its metadata
- `work/{job}/source`: the normalized source a job reads, JPEG or (where it has transparent parts)
  PNG; no extension, since it is either: the blob's content type says which
- `work/captions/{sha256}-{captioner}.json`: cached captions, shared by every job on that image,
  and `.json.claim` beside it, the job captioning it now
- `work/{job}/attempts/{call}.json`: the attempts spent on each paid call (shared/core/budget.py)
- `work/{job}/moderation/{what}-{check}.json`: each moderation verdict, for the manifest
- `work/{job}/preview-{k}.png`: the latest partial image of variation k while it is drawn (the
  status API links it while the job runs)
- `work/{job}/cancel`: the job was cancelled (POST /api/variations/{job}/cancel): its next steps
  make no paid call and it ends with code `cancelled`
- `work/{job}/unrated-{k}.png`: a generated image whose moderation has not answered yet, kept so a
  second attempt rates it instead of paying for a new one; emptied once it is rated
- `work/orchestrations/{job}/{generation}.json` (and `.done`), `work/orchestrations.lock`: the
  local runtime's saved jobs and the lease on them (shared/local/store.py; local runs only)
- `outputs/{job}/variation-{k}.png`: the images (PNG, or JPEG when the job asks for JPEG: the
  blob's content type says which), then `outputs/{job}/manifest.json`, written last
"""

from __future__ import annotations


def upload_name(sha256: str, extension: str) -> str:
    return f"{sha256}.{extension}"


def source_name(job_id: str) -> str:
    return f"{job_id}/source"


def reference_name(job_id: str, number: int) -> str:
    """Reference `number` (from 1), prepared like the source (JPEG, or PNG where transparent)."""
    return f"{job_id}/reference-{number}"


def mask_name(job_id: str) -> str:
    """The region edit's mask at the prepared image's size (RGBA PNG, transparent = change)."""
    return f"{job_id}/mask.png"


def caption_cache_name(image_sha256: str, captioner: str) -> str:
    return f"captions/{image_sha256}-{captioner}.json"


def caption_claim_name(cache_name: str) -> str:
    """The marker of the job paying for a caption now (single flight: the others wait for the cache)."""
    return f"{cache_name}.claim"


def attempts_prefix(job_id: str) -> str:
    return f"{job_id}/attempts/"


def attempts_name(job_id: str, call: str) -> str:
    return f"{attempts_prefix(job_id)}{call}.json"


def moderation_prefix(job_id: str) -> str:
    return f"{job_id}/moderation/"


def moderation_name(job_id: str, what: str, check: str) -> str:
    return f"{moderation_prefix(job_id)}{what}-{check}.json"


def unrated_name(job_id: str, index: int) -> str:
    return f"{job_id}/unrated-{index}.png"


def variation_prefix(job_id: str) -> str:
    return f"{job_id}/variation-"


def variation_name(job_id: str, index: int) -> str:
    return f"{variation_prefix(job_id)}{index}.png"


def cancel_name(job_id: str) -> str:
    """The mark of a job cancelled by its sender: the steps still to run see it and pay for nothing more."""
    return f"{job_id}/cancel"


def preview_name(job_id: str, index: int) -> str:
    """The latest partial image of variation `index` while it is drawn (overwritten as partials arrive)."""
    return f"{job_id}/preview-{index}.png"


def manifest_name(job_id: str) -> str:
    return f"{job_id}/manifest.json"


def job_of(name: str) -> str:
    """The job id a job's blob belongs to (`{job}/...`)."""
    return name.split("/", 1)[0]


ORCHESTRATIONS_PREFIX = "orchestrations/"
ORCHESTRATIONS_LOCK = "orchestrations.lock"


def orchestration_record_name(instance_id: str, generation: int, suffix: str) -> str:
    return f"{ORCHESTRATIONS_PREFIX}{instance_id}/{generation:06d}.{suffix}"
