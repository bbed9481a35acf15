"""Moderation thresholds per safety profile, and the offline moderator (the deterministic word check).

Azure AI Content Safety rates text and images in four harm categories, each with a severity of
0 (safe), 2 (low), 4 (medium) or 6 (high) (the "FourSeverityLevels" output, the default for both
APIs). A profile refuses a category at or above its threshold:

| category | kids | general |
|---|---|---|
| Hate | 2 | 2 |
| SelfHarm | 2 | 2 |
| Sexual | 2 | 2 |
| Violence | 2 | 4 |

The classroom refuses anything above "safe" in every category. A general audience accepts low
violence (a knight's sword, a cartoon fight: Microsoft's examples of severity 2) but nothing
sexual, hateful or about self-harm above "safe", which is what "safe for work" means here.
"""

from __future__ import annotations

from shared.adapters.providers.base import ModerationVerdict
from shared.core.safety import check_text as word_check

CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
THRESHOLDS: dict[str, dict[str, int]] = {
    "kids": {"Hate": 2, "SelfHarm": 2, "Sexual": 2, "Violence": 2},
    "general": {"Hate": 2, "SelfHarm": 2, "Sexual": 2, "Violence": 4},
}
_SHOWN = {"Hate": "hate", "SelfHarm": "self-harm", "Sexual": "sexual content", "Violence": "violence"}
_LEVEL = {2: "low", 4: "medium", 6: "high"}


def judge(categories: dict[str, int], profile: str, what: str, provider: str) -> ModerationVerdict:
    """The profile's verdict on severities by category: refused when any reaches its threshold."""
    limits = THRESHOLDS.get(profile, THRESHOLDS["kids"])  # an unknown profile gets the strictest
    over = [(name, level) for name, level in categories.items() if level >= limits.get(name, 2)]
    if not over:
        return ModerationVerdict(
            "allowed",
            f"Content Safety found nothing over the {profile} profile's limits in the {what}.",
            provider,
            dict(categories),
        )
    found = ", ".join(f"{_SHOWN.get(name, name)} ({_LEVEL.get(level, str(level))} severity)" for name, level in over)
    audience = "children" if profile == "kids" else "a general audience"
    reason = f"Azure AI Content Safety found {found} in the {what}, which is not allowed for {audience}."
    return ModerationVerdict("refused", reason, provider, dict(categories))


class OfflineModerator:
    """No network: texts go through the deterministic word check; images and injections are not analysed.

    Offline, the composer is a template that follows no instructions and the stylizer only restyles
    the source image, so there is no model to inject and no new content in an image to rate.
    """

    name = "word-check"
    paid = False

    def check_text(self, text: str, profile: str, *, what: str) -> ModerationVerdict:
        verdict = word_check(text, profile, what=what)
        return ModerationVerdict("allowed" if verdict.allowed else "refused", verdict.reason, self.name)

    def shield(self, user_prompt: str, documents: list[str]) -> ModerationVerdict:
        return ModerationVerdict(
            "allowed", "Prompt Shields needs Azure AI Content Safety; not checked offline.", self.name
        )

    def check_image(self, image: bytes, profile: str, *, what: str) -> ModerationVerdict:
        return ModerationVerdict(
            "allowed", f"The {what} was not analysed: offline there is no image moderation.", self.name
        )
