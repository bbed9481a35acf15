"""Offline providers: caption, compose and generate with no network and no cost.

They are the embedded default, so a laptop with nothing configured still runs the whole job.
They are honest about what they are: captions describe colours and layout only, and the
manifest names `offline` as the provider of every step.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable, Sequence

from PIL import Image, ImageStat

from shared.adapters.providers.base import CaptionResult, ComposeResult, ImageOptions
from shared.adapters.providers.offline_styles import (
    STYLES,
    coarse,
    detect_style,
    paint_scene,
    refine,
    reshape,
    stylize,
    vary,
)
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
    """Paints the requested style with Pillow; requests it cannot draw get a labelled preview.

    It honours ImageOptions as far as Pillow can: `action` vary (`strength` subtle or strong), refine
    and remix; mode "generate" paints a new scene from the picture's palette; `aspect`/`size` crop
    the result, `output_format` and `output_compression` encode it, and `partial_images` hands coarse
    previews to `on_partial`. A transparent background is not possible (offline_limits says so).
    """

    name = "offline"
    paid = False

    def generate(self, source: bytes, prompt: str, *, request: str, mode: Mode, landscape: bool, index: int) -> bytes:
        return encode_png(paint(open_rgb(source), request, mode, index, ImageOptions()))

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
        options = options or ImageOptions()
        picture = open_rgb(source)  # JPEG, or PNG with transparency: painted on white
        shaped = reshape(picture, options.aspect, options.size)
        source = source if shaped is picture else encode_png(shaped)
        styles = [open_rgb(data) for data, role in references if role == "style"]
        images = []
        for position, index in enumerate(indices):
            data: bytes | None = None
            if options.action in ("vary", "refine"):
                drawn = paint(shaped, request, mode, index, options)
            else:  # new, and remix (a new job on the chosen result): one variation as `generate` paints it
                data = self.generate(source, prompt, request=request, mode=mode, landscape=landscape, index=index)
                drawn = open_rgb(data)
            if styles:
                drawn, data = palette_transfer(drawn, styles), None
            if options.on_partial is not None:
                # Live previews, coarse to finer (1/16, 1/8, 1/4 of the size), as a model streams them.
                for number in range(min(3, max(0, options.partial_images))):
                    options.on_partial(position, number, encode_png(coarse(drawn, 16 >> number)))
            images.append(data if data is not None and options.output_format != "jpeg" else encode(drawn, options))
        return images


def paint(picture: Image.Image, request: str, mode: Mode, index: int, options: ImageOptions) -> Image.Image:
    """Variation `index` of a job on `picture` (RGB), as its action asks.

    new and remix (a new job on the chosen result): the request's style painted on the picture, or
    with mode "generate" on a new scene in the picture's colours. vary: the picture (the parent
    variation) changed a little or a lot (`options.strength`). refine: the picture re-rendered with
    less noise and more detail.
    """
    # The user's request, not the composed prompt: that one starts with the caption, and a
    # caption such as "a black and white photo of a dog" must not pick the style.
    style = detect_style(request)
    if options.action == "vary":
        return vary(picture, style, index, request, options.strength)
    if options.action == "refine":
        return refine(picture, index, options.quality)
    base = paint_scene(picture, index, request) if mode == "generate" else picture
    return stylize(base, style, index, request)


JPEG_DEFAULT_QUALITY = 85


def jpeg_quality(compression: int | None) -> int:
    """Pillow's JPEG quality for an OpenAI-style `output_compression` (0-100, 100 = least compressed):
    0 -> 10, 100 -> 95 (Pillow's advice for its top quality), None -> 85."""
    if compression is None:
        return JPEG_DEFAULT_QUALITY
    return 10 + round(max(0, min(100, compression)) * 85 / 100)


def encode(picture: Image.Image, options: ImageOptions) -> bytes:
    """The image in the asked format: JPEG at the asked compression, else PNG (always opaque)."""
    if options.output_format == "jpeg":
        out = io.BytesIO()
        picture.convert("RGB").save(out, format="JPEG", quality=jpeg_quality(options.output_compression))
        return out.getvalue()
    return encode_png(picture)


def _listed(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def offline_limits(request: str, mode: str, options: ImageOptions | None) -> str | None:
    """One sentence saying what the offline painter could not do of this request, or None when it can do it all.

    It restyles, varies and refines pictures; it cannot add, remove or move subjects, cut out a
    subject for a transparent background, or draw a described scene (mode "generate" gets a landscape
    in the picture's colours). A request with no style it knows gets a labelled preview.
    """
    options = options or ImageOptions()
    clauses: list[str] = []
    if options.action != "refine":  # refine re-renders the chosen picture; the request plays no part
        asked = split_request(request)
        shown = [f'"{_clip(thing)}"' for thing in asked.add]
        if shown:
            clauses.append(f"cannot add {_listed(shown)}")
        shown = [f'"{_clip(thing)}"' for thing in asked.remove]
        if shown:
            clauses.append(f"cannot remove {_listed(shown)}")
        if asked.background:
            clauses.append(f'cannot move the picture to "{_clip(asked.background)}"')
    if options.background == "transparent":
        clauses.append("cannot cut out a subject for a transparent background (the images stay opaque)")
    new_scene = mode == "generate" and options.action in ("new", "remix")
    if options.action != "refine" and detect_style(request) is None:
        preview = "a labelled landscape in your picture's colours" if new_scene else "a labelled preview"
        clauses.append(f"found no style it knows in the request, so it drew {preview}")
    elif new_scene:
        clauses.append("can draw a new scene only as a landscape in your picture's colours")
    return f"The offline painter {_listed(clauses)}." if clauses else None


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


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
