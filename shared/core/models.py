"""The JSON contracts between triggers, the orchestrator and the activities.

Everything that crosses a Durable boundary is one of these models, dumped with
`model_dump(mode="json")`. Image bytes never travel: only `BlobRef`s do.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, TypeAdapter

Profile = Literal["general", "kids"]
Mode = Literal["edit", "generate"]
Origin = Literal["blob", "http", "cli"]
JobStatus = Literal["succeeded", "refused", "failed"]
Stage = Literal["queued", "preparing", "captioning", "composing", "generating", "saving", "done"]

MAX_PROMPT_CHARS = 1000

# --- Lengths: every text a model or a service writes is capped where it enters a contract ------
# Durable moves a message over 45 KB to a large-message blob that every replay reads back, and the
# job's record (persist's input), the manifest (its output and the orchestration's) and each
# generate input carry the request's prompt: 1,000 characters, 6,000 bytes in a script that JSON
# escapes (the SDK and the worker write `\uXXXX` for every non-ASCII character). The caps below are
# bytes of that JSON, so they hold in every script, and they keep the largest message of a job at
# n = 10 under 16 KB (tests/test_message_sizes.py). Every message a person reads stays whole at
# these sizes; only a service's or a model's runaway text is cut, with "…" where it was cut.
# The composed prompt: GPT-image takes 32,000 characters, so this cap is ours. The composer is asked
# for 800 characters; 1,000 leave it room and still say everything an image needs. In a script JSON
# escapes, MAX_OUTPUT_PROMPT_BYTES (250 Cyrillic or CJK characters: 40 Russian words, as much as
# 600 English characters in Chinese) keeps it from crowding out the rest of the job's record.
MAX_OUTPUT_PROMPT_CHARS = 1000
MAX_OUTPUT_PROMPT_BYTES = 1500
_ELLIPSIS = "…"
_SENTENCE_END = re.compile(r"[.!?](?=\s)|[。！？]")


def json_bytes(char: str) -> int:
    """The bytes one character takes in a Durable message (JSON, non-ASCII escaped as 6-byte \\u escapes)."""
    code = ord(char)
    if 0x20 <= code < 0x80:
        return 2 if char in '"\\' else 1
    if code < 0x20:
        return 2 if char in "\b\f\n\r\t" else 6
    return 12 if code > 0xFFFF else 6  # beyond the BMP: a surrogate pair


def _fitting(text: str, max_bytes: int) -> int:
    """How many of `text`'s first characters fit in `max_bytes` of JSON."""
    used = 0
    for count, char in enumerate(text):
        used += json_bytes(char)
        if used > max_bytes:
            return count
    return len(text)


def cut_at_boundary(text: str, max_chars: int, max_bytes: int) -> str:
    """`text`'s longest start within both limits, ending after a sentence, else a word, when one is near."""
    keep = min(max_chars, _fitting(text, max_bytes))
    if keep >= len(text):
        return text
    head = text[:keep]
    sentence = max((m.end() for m in _SENTENCE_END.finditer(head)), default=0)
    word = max(head.rfind(" "), head.rfind("，"), head.rfind("、"))
    cut = sentence if sentence >= keep // 2 else word if word >= keep // 2 else keep
    return head[:cut].rstrip()


def clip(text: str, max_bytes: int, keep_end: bool = False) -> str:
    """`text` within `max_bytes` of JSON: cut at a word with "…", keeping its end too when `keep_end`.

    A message often ends with what to do next ("An admin should check ..."), after a service's own
    words in its middle: `keep_end` keeps a third of the room for the end.
    """
    if _fitting(text, max_bytes) >= len(text):
        return text
    room = max_bytes - json_bytes(_ELLIPSIS)
    if not keep_end:
        return cut_at_boundary(text, len(text), room) + _ELLIPSIS
    tail_room = room // 3
    tail = text[len(text) - _fitting(text[::-1], tail_room) :]
    space = tail.find(" ")
    if 0 <= space < len(tail) // 2:
        tail = tail[space:]  # from a word's start
    return cut_at_boundary(text, len(text), room - tail_room) + _ELLIPSIS + tail.lstrip()


def _clipped(max_bytes: int, keep_end: bool = False) -> AfterValidator:
    return AfterValidator(lambda text: text if text is None else clip(text, max_bytes, keep_end))


def _few(items: int, max_bytes: int) -> AfterValidator:
    return AfterValidator(lambda texts: [clip(t, max_bytes) for t in texts[:items]])


Message = Annotated[str, _clipped(600, keep_end=True)]  # a job's message (one per job)
Reason = Annotated[str, _clipped(320, keep_end=True)]  # one image's or one verdict's reason (up to n per job)


class BlobRef(BaseModel):
    """Where an image lives: container + name, and what version of it we mean."""

    container: str
    name: str
    etag: str | None = None
    sha256: str | None = None


ReferenceRole = Literal["style", "subject"]
MAX_REFERENCES = 4


class Reference(BaseModel):
    """A picture that goes with the job: its style to borrow, or a subject to put in the scene."""

    image: BlobRef
    role: ReferenceRole = "style"


# --- Iteration: a job that starts from a variation of an earlier job ----------------------------
# new: from an upload or a blob; vary: the chosen result again, changed a little (subtle) or a lot
# (strong); remix: the chosen result with a new prompt; refine: the chosen result re-rendered at a
# higher quality (the draft-then-final loop).
Action = Literal["new", "vary", "remix", "refine"]
Strength = Literal["subtle", "strong"]
Quality = Literal["low", "medium", "high", "auto"]
Aspect = Literal["auto", "square", "landscape", "portrait"]
OutputFormat = Literal["png", "jpeg"]
Background = Literal["auto", "opaque", "transparent"]


class Parent(BaseModel):
    """The variation a job starts from: variation `index` of job `job_id`."""

    job_id: str
    index: int = Field(ge=0, le=9)


class OutputOptions(BaseModel):
    """How the images are rendered: quality, shape, file format and background.

    `quality` None is VARIA_IMAGE_QUALITY (refine's default is high). `aspect` auto keeps the
    source's shape; `size` is a custom WxH where the model takes one (gpt-image-2). `compression`
    (0-100) applies to JPEG. A transparent background is drawn where the model supports it.
    """

    quality: Quality | None = None
    aspect: Aspect = "auto"
    size: str | None = Field(default=None, pattern=r"^[1-9][0-9]{2,3}x[1-9][0-9]{2,3}$")
    format: OutputFormat = "png"
    compression: int | None = Field(default=None, ge=0, le=100)
    background: Background = "auto"

    def job_id_part(self) -> str:
        """A job-id part for non-default options ("" for the defaults, so the ids of other jobs stay as they were)."""
        return "" if self == OutputOptions() else "output:" + self.model_dump_json(exclude_defaults=True)


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
    # The user's own name for the image (upload, CLI path, blob name), for messages.
    filename: Annotated[str | None, _clipped(240, keep_end=True)] = None
    # A region edit: a PNG whose transparent pixels mark the area to change (shared/core/masks.py).
    mask: BlobRef | None = None
    references: Annotated[list[Reference], Field(max_length=MAX_REFERENCES)] = []
    # Iteration: the variation this job starts from (its `source` is that image), and what to do to it.
    parent: Parent | None = None
    action: Action = "new"
    strength: Strength | None = None  # vary only
    output: OutputOptions = OutputOptions()


class PreparedImage(BaseModel):
    """The source after validation and normalization (EXIF applied then stripped, RGB PNG)."""

    image: BlobRef  # work/{job}/source (JPEG, or PNG where transparent), with sha256
    width: int
    height: int
    original_format: str
    original_bytes: int
    # The mask at the prepared image's size (work/{job}/mask.png) and the share of the picture it
    # marks for change; None without a mask.
    mask: BlobRef | None = None
    mask_share: float | None = None
    # The references, prepared like the source (work/{job}/reference-{k}), in the request's order.
    references: Annotated[list[Reference], Field(max_length=MAX_REFERENCES)] = []
    # vary and refine: the caption and composed prompt are this parent job's (no caption or compose call).
    inherits: Parent | None = None


class Caption(BaseModel):
    text: Annotated[str, _clipped(500)]
    tags: Annotated[list[str], _few(20, 40)] = []
    provider: str
    cached: bool = False
    # The references' captions, in order: the word check and the composer read them with the source's.
    references: Annotated[list[Annotated[str, _clipped(500)]], Field(max_length=MAX_REFERENCES)] = []


class SubTasks(BaseModel):
    """What the request asks for, split so the generator and the manifest can say it plainly."""

    style: Annotated[str | None, _clipped(100)] = None
    add: Annotated[list[str], _few(4, 64)] = []
    remove: Annotated[list[str], _few(4, 64)] = []
    background: Annotated[str | None, _clipped(100)] = None


class Composition(BaseModel):
    verdict: Literal["allow", "refuse"]
    reason: Annotated[str, _clipped(300, keep_end=True)]
    output_prompt: Annotated[str, _clipped(MAX_OUTPUT_PROMPT_BYTES)] = ""  # the compose step cuts it first
    subtasks: SubTasks = SubTasks()
    provider: str
    profile: Profile = "general"
    code: str | None = None  # why it refused: word_check, composer_refused or service_refused


class Variation(BaseModel):
    index: int
    status: JobStatus
    image: BlobRef | None = None
    provider: str
    reason: Reason | None = None  # why it was refused or failed
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
    message: Message


class ProgressStatus(BaseModel):
    """The orchestrator's custom status (kept far below Durable's 16 KB limit)."""

    stage: Stage
    done: int = 0
    total: int = 0
    message: str | None = None


class CallCount(BaseModel):
    attempted: int = 0  # every attempt, billed or not
    delivered: int = 0  # attempts whose result the job used
    rejected: int = 0  # attempts a 429 turned away: Azure bills none of them

    @property
    def billed(self) -> int:
        """Attempts that may have been billed (a conservative estimate of what was paid): all but the 429s."""
        return self.attempted - self.rejected


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
    reason: Reason
    categories: dict[str, int] = {}
    attacks: dict[str, bool] = {}


class Manifest(BaseModel):
    """What was done to one job and why. Written last: its presence means the job is over."""

    job_id: str
    status: JobStatus
    code: str | None = None  # why it was refused or failed (or, when partial, why some images are missing)
    message: Message | None = None  # the refusal reason or the error a user can act on
    partial: bool = False  # succeeded with some variations refused or failed (each says why)
    request: JobRequest
    source: PreparedImage | None = None
    caption: Caption | None = None
    composition: Composition | None = None
    variations: list[Variation] = []
    providers: dict[str, str] = {}
    paid_calls: PaidCalls = PaidCalls()
    moderation: list[ModerationRecord] = []  # every verdict, in the order they were made
    estimated_cost_usd: float = 0.0  # every paid call attempted (a 429 aside), priced with VARIA_PRICES_USD
    # Iteration: the variation this job started from and what it did to it (also in `request`).
    parent: Parent | None = None
    action: Action = "new"
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
