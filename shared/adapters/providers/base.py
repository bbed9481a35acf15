"""The provider interfaces for each paid step, and the errors that say what a service answered.

Every answer a provider gets that is not a result becomes one of three errors, each with a code
from shared/core/codes.py and a message written for the person running the job:

- `ContentRefused`: a content filter or the model said no (by whom is in `by`). A `refused`
  outcome, never retried; a refusal can still be billed (`billed`).
- `PermanentServiceError`: will not work until someone changes something (credentials, a blocked
  resource, a missing deployment, a token budget too small). Never retried.
- `TransientServiceError`: may work on another attempt (429, 5xx, a lost connection). Within the
  spend budget (at most 2 attempts per paid call) the step tries again, after `retry_after`
  seconds when the service said how long; `retryable=False` marks an answer that is not worth
  paying for twice (an image call that timed out is likely billed and likely to time out again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shared.core.models import Mode, SubTasks
from shared.core.safety import SafetyProfile


class ProviderError(Exception):
    """Base of the errors providers raise; the message is written for the person running the job."""

    def __init__(self, message: str, code: str, *, billed: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.billed = billed  # the service charges for this answer (a 200 content_filter, a timed-out image)


class TransientServiceError(ProviderError):
    def __init__(
        self,
        message: str,
        code: str = "service_unavailable",
        *,
        retry_after: float | None = None,
        retryable: bool = True,
        billed: bool = False,
    ) -> None:
        super().__init__(message, code, billed=billed)
        self.retry_after = retry_after
        self.retryable = retryable


class PermanentServiceError(ProviderError):
    def __init__(self, message: str, code: str = "service_config", *, billed: bool = False) -> None:
        super().__init__(message, code, billed=billed)


class ContentRefused(ProviderError):
    def __init__(self, message: str, code: str = "service_refused", *, by: str = "", billed: bool = False) -> None:
        super().__init__(message, code, billed=billed)
        self.by = by


@dataclass(frozen=True)
class CaptionResult:
    text: str
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ComposeResult:
    verdict: str  # "allow" or "refuse"
    reason: str
    output_prompt: str
    subtasks: SubTasks
    code: str | None = None  # why it refused: composer_refused (the verdict), service_refused (a filter)


class Captioner(Protocol):
    name: str
    paid: bool

    def caption(self, png: bytes) -> CaptionResult: ...


class Composer(Protocol):
    name: str
    paid: bool

    def compose(self, caption: str, request: str, profile: SafetyProfile) -> ComposeResult: ...


# A partial image as it arrives: (position in the request's batch, partial number from 0, image bytes).
OnPartial = Callable[[int, int, bytes], None]


@dataclass(frozen=True)
class ImageOptions:
    """How one image request renders (from the job's OutputOptions and its action).

    `quality` None is the generator's default (VARIA_IMAGE_QUALITY). `input_fidelity` ("high" or
    "low") goes with an edit where the model takes it. `action` and `strength` say what the job
    does to a parent variation (the offline painter measures its change by them). `aspect` and
    `size` choose the output's shape ("auto": the source's). `output_format` is "png" or "jpeg"
    (`output_compression` 0-100 for JPEG); `background` "transparent" where supported.
    `partial_images` (0-3) asks for previews as the image is drawn; each is handed to `on_partial`.
    """

    quality: str | None = None
    input_fidelity: str | None = None
    action: str = "new"
    strength: str | None = None
    aspect: str = "auto"
    size: str | None = None
    output_format: str = "png"
    output_compression: int | None = None
    background: str = "auto"
    partial_images: int = 0
    on_partial: OnPartial | None = None


class ImageGenerator(Protocol):
    name: str
    paid: bool

    def generate_batch(
        self,
        source: bytes,
        prompt: str,
        *,
        request: str,
        mode: Mode,
        landscape: bool,
        indices: list[int],
        deployment: str,
        before_send: Callable[[], None] | None = None,
        mask: bytes | None = None,
        references: Sequence[tuple[bytes, str]] = (),
        options: ImageOptions | None = None,
    ) -> list[bytes]:
        """Variations `indices` of a job (PNG or JPEG bytes) in one request, on `deployment` (a quota key
        from shared/adapters/quota.py); `before_send` runs as the request leaves (the quota's gate).

        `prompt` is the composed output prompt; `request` is the user's own words, for generators
        that read the request itself (the offline stylizer) rather than the composed prompt. It may
        return fewer images than asked (the service sent fewer); never more. A `mask` (a region edit:
        PNG at the source's size, transparent = change) is for generators that take one; whatever
        they draw, the generate step keeps every pixel outside it (shared/core/masks.py).
        `references` are prepared pictures with their role ("style" or "subject"), in order.
        `options` (ImageOptions; None: the defaults) carry quality, shape, format, input fidelity and previews.
        """
        ...


# --- Moderation: a second opinion on the request, the composed prompt and each image -------------

Verdict = Literal["allowed", "refused"]


@dataclass(frozen=True)
class ModerationVerdict:
    """What a moderator decided about one text, prompt pair or image, and on what grounds.

    `categories` holds the severity per harm category (Hate, SelfHarm, Sexual, Violence: 0, 2, 4
    or 6) when the moderator rates them; `attacks` says, for Prompt Shields, where an injection
    was found ("request", "caption"). `reason` is written for the person running the job.
    """

    verdict: Verdict
    reason: str
    provider: str
    categories: dict[str, int] = field(default_factory=dict)
    attacks: dict[str, bool] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.verdict == "allowed"


class Moderator(Protocol):
    """Rates texts and images against a safety profile (shared/adapters/providers/moderation.py)."""

    name: str
    paid: bool

    def check_text(self, text: str, profile: str, *, what: str) -> ModerationVerdict:
        """Harm categories of `text` (the request, the composed prompt), judged by the profile's thresholds."""
        ...

    def shield(self, user_prompt: str, documents: list[str]) -> ModerationVerdict:
        """Prompt Shields: an injection in the user's request, or in documents (the caption) the composer reads."""
        ...

    def check_image(self, image: bytes, profile: str, *, what: str) -> ModerationVerdict:
        """Harm categories of a generated image, judged by the profile's thresholds."""
        ...
