"""The provider interfaces for each paid step, and the errors that tell the orchestrator what to do.

- `TransientServiceError`: may work later (429, 5xx, timeouts). Raised, so Durable retries.
- `PermanentServiceError`: will not work until someone changes something (401, bad deployment name,
  malformed answers). Returned to the orchestrator as a failure with the message, never retried.
- `ContentRefused`: the service's own content filter said no. A `refused` outcome, never retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from shared.core.models import Mode, SubTasks
from shared.core.safety import SafetyProfile


class ProviderError(Exception):
    """Base of the errors providers raise; the message is written for the person running the job."""


class TransientServiceError(ProviderError):
    pass


class PermanentServiceError(ProviderError):
    pass


class ContentRefused(ProviderError):
    pass


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


class Captioner(Protocol):
    name: str
    paid: bool

    def caption(self, png: bytes) -> CaptionResult: ...


class Composer(Protocol):
    name: str
    paid: bool

    def compose(self, caption: str, request: str, profile: SafetyProfile) -> ComposeResult: ...


class ImageGenerator(Protocol):
    name: str
    paid: bool

    def generate(
        self, source_png: bytes, prompt: str, *, request: str, mode: Mode, landscape: bool, index: int
    ) -> bytes:
        """One image (PNG bytes) for variation `index` of a job.

        `prompt` is the composed output prompt; `request` is the user's own words, for generators
        that read the request itself (the offline stylizer) rather than the composed prompt.
        """
        ...
