"""The JSON contracts between triggers, the orchestrator and the activities.

Everything that crosses a Durable boundary is one of these models, dumped with
`model_dump(mode="json")`. Image bytes never travel: only `BlobRef`s do.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Profile = Literal["general", "kids"]
Mode = Literal["edit", "generate"]
Origin = Literal["blob", "http", "cli"]
JobStatus = Literal["succeeded", "refused", "failed"]
Stage = Literal["queued", "preparing", "captioning", "composing", "generating", "saving", "done"]

MAX_PROMPT_CHARS = 1000


class BlobRef(BaseModel):
    """Where an image lives: container + name, and what version of it we mean."""

    container: str
    name: str
    etag: str | None = None
    sha256: str | None = None


class JobRequest(BaseModel):
    """One job: an image, what to do with it, and under which safety profile."""

    job_id: str
    source: BlobRef
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    prompt_origin: str = "request"  # "request", "metadata" or "preset:<name>"
    profile: Profile = "general"
    n: int = Field(default=2, ge=1, le=10)
    mode: Mode = "edit"
    origin: Origin = "cli"


class PreparedImage(BaseModel):
    """The source after validation and normalization (EXIF applied then stripped, RGB PNG)."""

    image: BlobRef  # work/{job}/source.png, with sha256
    width: int
    height: int
    original_format: str
    original_bytes: int


class Caption(BaseModel):
    text: str
    tags: list[str] = []
    provider: str
    cached: bool = False


class SubTasks(BaseModel):
    """What the request asks for, split so the generator and the manifest can say it plainly."""

    style: str | None = None
    add: list[str] = []
    remove: list[str] = []
    background: str | None = None


class Composition(BaseModel):
    verdict: Literal["allow", "refuse"]
    reason: str
    output_prompt: str = ""
    subtasks: SubTasks = SubTasks()
    provider: str
    profile: Profile = "general"


class Variation(BaseModel):
    index: int
    status: JobStatus
    image: BlobRef | None = None
    provider: str
    reason: str | None = None  # why it was refused or failed
    reused: bool = False  # an earlier attempt had already stored this image
    retryable: bool = False  # failed for a reason a later attempt may cure (429, 5xx, timeout)


class Problem(BaseModel):
    """A permanent outcome an activity returns instead of raising, so Durable does not retry it."""

    status: Literal["refused", "failed"]
    stage: str
    message: str


class ProgressStatus(BaseModel):
    """The orchestrator's custom status (kept far below Durable's 16 KB limit)."""

    stage: Stage
    done: int = 0
    total: int = 0
    message: str | None = None


class PaidCalls(BaseModel):
    """Calls that cost money, by service. Cached captions and offline providers count zero."""

    caption: int = 0
    compose: int = 0
    image: int = 0


class Manifest(BaseModel):
    """What was done to one job and why. Written last: its presence means the job is over."""

    job_id: str
    status: JobStatus
    message: str | None = None  # the refusal reason or the error a user can act on
    request: JobRequest
    source: PreparedImage | None = None
    caption: Caption | None = None
    composition: Composition | None = None
    variations: list[Variation] = []
    providers: dict[str, str] = {}
    paid_calls: PaidCalls = PaidCalls()
    estimated_cost_usd: float = 0.0  # paid_calls priced with VARIA_PRICES_USD
    finished_at: str
    version: int = 1
