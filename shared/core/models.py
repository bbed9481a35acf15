"""The JSON contracts between triggers, the orchestrator and the activities.

Everything that crosses a Durable boundary is one of these models, dumped with
`model_dump(mode="json")`. Image bytes never travel: only `BlobRef`s do.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

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
    profile: Profile = "general"  # the profile the job runs under
    # True when VARIA_ENFORCED_PROFILE chose `profile`, whatever the request said.
    profile_enforced: bool = False
    requested_profile: Profile | None = None  # the profile the request named (None: it named none)
    n: int = Field(default=2, ge=1, le=10)
    mode: Mode = "edit"
    origin: Origin = "cli"
    filename: str | None = None  # the user's own name for the image (upload, CLI path, blob name), for messages


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
    code: str | None = None  # why it refused: word_check, composer_refused or service_refused


class Variation(BaseModel):
    index: int
    status: JobStatus
    image: BlobRef | None = None
    provider: str
    reason: str | None = None  # why it was refused or failed
    code: str | None = None  # the same, as a code from shared/core/codes.py
    reused: bool = False  # an earlier attempt had already stored this image
    retryable: bool = False  # failed for a reason another attempt may cure (429, 5xx), budget permitting
    retry_after_s: float | None = None  # how long the service asked us to wait before that attempt
    deployment: str | None = None  # the image deployment (quota key) that answered, when there are several


class Problem(BaseModel):
    """A permanent outcome an activity returns instead of raising, so Durable does not retry it.

    `code` is stable and machine-readable (the page and scripts branch on it, never on the
    message); `message` is for people: true when read, and it says what to do next.
    """

    kind: Literal["problem"] = "problem"  # tells a Problem from the step's normal result
    status: Literal["refused", "failed"]
    code: str
    stage: str
    message: str


class ProgressStatus(BaseModel):
    """The orchestrator's custom status (kept far below Durable's 16 KB limit)."""

    stage: Stage
    done: int = 0
    total: int = 0
    message: str | None = None


class CallCount(BaseModel):
    attempted: int = 0  # every attempt, billed or not (a conservative estimate of what was paid)
    delivered: int = 0  # attempts whose result the job used


class PaidCalls(BaseModel):
    """Calls that cost money, by service. Cached captions and offline providers count zero."""

    caption: CallCount = CallCount()
    compose: CallCount = CallCount()
    image: CallCount = CallCount()
    moderation: CallCount = CallCount()  # Azure AI Content Safety: texts, Prompt Shields and images


class ModerationRecord(BaseModel):
    """One verdict on the way to the images: the word check's, or Content Safety's.

    `what` is what was judged: `request`, `caption` (with the request, for Prompt Shields),
    `prompt` (the composed prompt) or `image-{k}`. `check` is how: `word-check`, `text`,
    `shield` or `image`. `categories` holds Content Safety's severities (0, 2, 4, 6) by harm
    category; `attacks` where Prompt Shields found an injection.
    """

    what: str
    check: Literal["word-check", "text", "shield", "image"]
    provider: str
    verdict: Literal["allowed", "refused"]
    reason: str
    categories: dict[str, int] = {}
    attacks: dict[str, bool] = {}


class Manifest(BaseModel):
    """What was done to one job and why. Written last: its presence means the job is over."""

    job_id: str
    status: JobStatus
    code: str | None = None  # why it was refused or failed (or, when partial, why some images are missing)
    message: str | None = None  # the refusal reason or the error a user can act on
    partial: bool = False  # succeeded with some variations refused or failed (each says why)
    request: JobRequest
    source: PreparedImage | None = None
    caption: Caption | None = None
    composition: Composition | None = None
    variations: list[Variation] = []
    providers: dict[str, str] = {}
    paid_calls: PaidCalls = PaidCalls()
    moderation: list[ModerationRecord] = []  # every verdict, in the order they were made
    estimated_cost_usd: float = 0.0  # every attempted paid call, priced with VARIA_PRICES_USD
    finished_at: str
    version: int = 1


# --- What each activity takes and returns ----------------------------------------------------
# prepare: JobRequest -> PreparedImage | Problem
# caption: PreparedImage -> Caption | Problem
# compose: ComposeInput -> Composition | Problem
# generate: GenerateInput -> Variation (never a Problem: one image's failure is not the job's)
# persist: JobRecord -> Manifest


class ComposeInput(BaseModel):
    request: JobRequest
    caption: Caption


class GenerateInput(BaseModel):
    """One image request of a job: variation `index`, or `indices` drawn together in one request.

    `deployment` and `not_before` are its quota slot (shared/adapters/quota.py): the request goes
    to that deployment, no earlier than that time (Unix seconds). Without them, the step takes a
    slot itself.
    """

    request: JobRequest
    prepared: PreparedImage
    composition: Composition
    index: int = Field(ge=0)
    indices: list[Annotated[int, Field(ge=0)]] = Field(default=[], max_length=10)
    attempt: int = Field(default=1, ge=1)
    deployment: str = ""
    not_before: float = 0.0

    @property
    def drawn(self) -> list[int]:
        """The variations this request draws."""
        return list(self.indices) or [self.index]


class ReserveInput(BaseModel):
    """The variations of one job that need image requests this round, and deployments that just said 429."""

    job_id: str
    indices: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=10)
    avoid: list[str] = []


class PlannedImageRequest(BaseModel):
    indices: list[int]
    deployment: str = ""  # "" when the generator has no quota (offline)
    not_before: float = 0.0  # Unix seconds


class QuotaPlan(BaseModel):
    """The `reserve` step's answer: the job's image requests, each with its slot."""

    requests: list[PlannedImageRequest]


class Generated(BaseModel):
    """The `generate` step's answer: one variation per index the request drew."""

    variations: list[Variation]


class JobRecord(BaseModel):
    """The orchestrator's record of one job: each step's result as it arrives; persist's input."""

    request: JobRequest
    stage: Stage = "queued"
    prepared: PreparedImage | None = None
    caption: Caption | None = None
    composition: Composition | None = None
    variations: list[Variation] = []
    problem: Problem | None = None
    finished_at: str = ""


# A step's outcome as the orchestrator reads it back from Durable's JSON.
Prepared = TypeAdapter(Annotated[Problem | PreparedImage, Field(union_mode="left_to_right")])
Captioned = TypeAdapter(Annotated[Problem | Caption, Field(union_mode="left_to_right")])
Composed = TypeAdapter(Annotated[Problem | Composition, Field(union_mode="left_to_right")])
