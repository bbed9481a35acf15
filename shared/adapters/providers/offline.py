"""Offline providers: caption, compose and generate with no network and no cost.

They are the embedded default, so a laptop with nothing configured still runs the whole job.
They are honest about what they are: captions describe colours and layout only, and the
manifest names `offline` as the provider of every step.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from PIL import Image, ImageStat

from shared.adapters.providers.base import CaptionResult, ComposeResult, ImageOptions
from shared.adapters.providers.offline_styles import STYLES, detect_style, stylize
from shared.core.images import encode_png, open_rgb
from shared.core.models import Mode, SubTasks
from shared.core.safety import SafetyProfile, check_text

_COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
    "red": (200, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 220, 50),
    "green": (60, 160, 60),
    "teal": (30, 140, 140),
    "blue": (40, 80, 200),
    "sky blue": (120, 180, 235),
    "purple": (130, 60, 160),
    "pink": (240, 150, 190),
    "brown": (120, 80, 40),
}


_NAMES = list(_COLOUR_NAMES)
_NAMED_PALETTE = Image.new("P", (1, 1))
# The named colours, then the first repeated: quantize maps to the nearest of all 256 entries.
_NAMED_PALETTE.putpalette(
    [v for n in _NAMES for v in _COLOUR_NAMES[n]] + list(_COLOUR_NAMES[_NAMES[0]]) * (256 - len(_NAMES))
)


class OfflineCaptioner:
    """Describes what can be measured: orientation, brightness and the dominant colours."""

    name = "offline"
    paid = False

    def caption(self, image: bytes) -> CaptionResult:
        img = open_rgb(image)  # the prepared image: JPEG, or PNG with transparency (read on white)
        width, height = img.size
        shape = (
            "square"
            if abs(width - height) < 0.05 * max(width, height)
            else ("landscape" if width > height else "portrait")
        )
        brightness = ImageStat.Stat(img.convert("L")).mean[0]
        mood = "bright" if brightness > 170 else "dark" if brightness < 80 else "softly lit"
        # Each pixel of a thumbnail counted under its nearest named colour. (Clustering first, as
        # median cut does, spends its clusters on the near-identical blues of a JPEG's sky and
        # merges the small, distinct areas: a green and red scene came out "grey and pink".)
        small = img.resize((64, 64)).quantize(palette=_NAMED_PALETTE, dither=Image.Dither.NONE)
        counts = sorted(small.getcolors() or [], reverse=True)
        indices = [int(idx) for _count, idx in counts]  # type: ignore[call-overload]  # P-mode indices
        names = list(dict.fromkeys(_NAMES[i] if i < len(_NAMES) else _NAMES[0] for i in indices))
        colours = " and ".join(names[:2]) if len(names) < 3 else f"{names[0]}, {names[1]} and {names[2]}"
        text = f"a {mood} {shape} image dominated by {colours} tones"
        return CaptionResult(text=text, tags=[*names[:3], shape, mood])


_ADD = re.compile(r"\b(?:add|adding|with|avec|ajoute[rz]?|con|anade|agrega)\s+(?:an?\s+|une?\s+|el\s+|la\s+)?([^,.;]+)")
_REMOVE = re.compile(r"\b(?:remove|without|sans|enleve[rz]?|sin|quita[r]?)\s+(?:the\s+|le\s+|la\s+|les\s+)?([^,.;]+)")
_BACKGROUND = re.compile(
    r"\b(?:beside|next to|in front of|at|on|under|in|pres de|devant|a cote de|junto a|frente a|en)\s+(?:the\s+)?"
    r"([^,.;]*(?:tower|beach|forest|mountain|city|space|sea|ocean|park|desert|snow|sunset|sunrise|"
    r"tour|plage|foret|montagne|ville|espace|mer|playa|bosque|montana|ciudad)[^,.;]*)"
)


def split_request(request: str) -> SubTasks:
    """Split a modification request into style / add / remove / background, by simple patterns."""
    # Case and accents folded, punctuation kept: a comma ends a clause ("without the car, beside ...").
    folded = "".join(c for c in unicodedata.normalize("NFKD", request.casefold()) if not unicodedata.combining(c))
    style = detect_style(request)
    background = _BACKGROUND.search(folded)
    return SubTasks(
        style=STYLES[style].label if style else None,
        add=[m.strip() for m in _ADD.findall(folded)][:3],
        remove=[m.strip() for m in _REMOVE.findall(folded)][:3],
        background=background.group(1).strip() if background else None,
    )


class OfflineComposer:
    """A deterministic template under the same word check as the Azure composer."""

    name = "offline"
    paid = False

    def compose(self, caption: str, request: str, profile: SafetyProfile) -> ComposeResult:
        for what, text in (("request", request), ("caption", caption)):
            verdict = check_text(text, profile.name, what=what)
            if not verdict.allowed:
                return ComposeResult("refuse", verdict.reason, "", SubTasks())
        subtasks = split_request(request)
        parts = [f"{caption.rstrip('.')}, modified as asked: {request.strip()}."]
        if subtasks.style:
            parts.append(f"Render it in a {subtasks.style} style.")
        output = " ".join(parts) + profile.prompt_suffix
        return ComposeResult("allow", "The request is a harmless image modification.", output, subtasks)


class OfflineStylizer:
    """Applies the requested style with Pillow; requests it cannot draw get a labelled preview."""

    name = "offline"
    paid = False

    def generate(self, source: bytes, prompt: str, *, request: str, mode: Mode, landscape: bool, index: int) -> bytes:
        picture = open_rgb(source)  # JPEG, or PNG with transparency: painted on white
        # The user's request, not the composed prompt: that one starts with the caption, and a
        # caption such as "a black and white photo of a dog" must not pick the style.
        return encode_png(stylize(picture, detect_style(request), index, request))

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
        drawn = [
            self.generate(source, prompt, request=request, mode=mode, landscape=landscape, index=i) for i in indices
        ]
        styles = [open_rgb(data) for data, role in references if role == "style"]
        return [encode_png(palette_transfer(open_rgb(image), styles)) for image in drawn] if styles else drawn


def palette_transfer(picture: Image.Image, styles: Sequence[Image.Image]) -> Image.Image:
    """The picture recoloured toward the style references' palette: each RGB channel's mean and spread
    matched to theirs (averaged over the references), the way a colour-transfer filter does."""
    target = [ImageStat.Stat(style.convert("RGB")) for style in styles]
    own = ImageStat.Stat(picture)
    bands = []
    for channel, band in enumerate(picture.split()):
        mean = sum(t.mean[channel] for t in target) / len(target)
        spread = sum(t.stddev[channel] for t in target) / len(target)
        gain = spread / own.stddev[channel] if own.stddev[channel] > 1 else 1.0
        offset = mean - own.mean[channel] * gain
        bands.append(band.point(lambda v, g=gain, o=offset: max(0, min(255, round(v * g + o)))))
    return Image.merge("RGB", bands)
