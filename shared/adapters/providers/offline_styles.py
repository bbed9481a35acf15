"""Offline image stylizer: paints a variation in a named style with plain Pillow when no Azure image model is set up."""

from __future__ import annotations

import json
import math
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps, ImageStat

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Style:
    """One offline style: machine name, human label, prompt keywords and the painter `apply(rgb_image, variant)`."""

    name: str
    label: str
    keywords: tuple[str, ...]
    apply: Callable[[Image.Image, int], Image.Image]


# --------------------------------------------------------------------------- shared helpers


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of an image of any mode; transparent areas become white instead of black."""
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def _noise(size: tuple[int, int], seed: str, cell: int = 1) -> Image.Image:
    """Deterministic uniform noise ("L"); with cell > 1 it is smooth blotches about `cell` px wide."""
    width, height = size
    small_size = (max(1, -(-width // cell)), max(1, -(-height // cell)))
    small = Image.frombytes("L", small_size, random.Random(seed).randbytes(small_size[0] * small_size[1]))
    return small if small_size == size else small.resize(size, Image.Resampling.BICUBIC)


def _streaks(size: tuple[int, int], seed: str, length: int, thickness: int, rising: bool) -> Image.Image:
    """Noise drawn out into diagonal streaks ("L"), used for pencil hatching and brush marks."""
    width, height = size
    # Stretch coarse noise horizontally into streaks, then shear the rows so the streaks run at 45 degrees.
    tall = (width, height + width)
    small_size = (max(1, width // length), max(1, tall[1] // thickness))
    rows = Image.frombytes("L", small_size, random.Random(seed).randbytes(small_size[0] * small_size[1]))
    rows = ImageOps.autocontrast(rows.resize(tall, Image.Resampling.BILINEAR), cutoff=1)
    shear = (1, 0, 0, 1, 1, 0) if rising else (1, 0, 0, -1, 1, width)
    return rows.transform(size, Image.Transform.AFFINE, shear, Image.Resampling.BILINEAR)


def _add_grain(image: Image.Image, seed: str, amount: float) -> Image.Image:
    """Film grain: overlay noise squeezed around mid-grey (mid-grey leaves a pixel unchanged)."""
    grain = _noise(image.size, seed).point(lambda v: round(128 + (v - 128) * amount))
    return ImageChops.overlay(image, grain.convert(image.mode))


def _vignette(image: Image.Image, strength: float) -> Image.Image:
    """Darken towards the corners by multiplying with a stretched radial gradient."""
    distance = Image.radial_gradient("L").resize(image.size, Image.Resampling.BILINEAR)
    mask = distance.point(lambda d: round(255 * (1 - strength * (d / 255) ** 2)))
    return ImageChops.multiply(image, mask.convert(image.mode))


def _shift_hue(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate every hue by `degrees` (HSV stores hue as 0-255)."""
    hue, saturation, value = image.convert("HSV").split()
    offset = round(degrees / 360 * 256)
    hue = hue.point(lambda h: (h + offset) % 256)
    return Image.merge("HSV", (hue, saturation, value)).convert("RGB")


def _gradient_map(gray: Image.Image, stops: Sequence[Colour]) -> Image.Image:
    """Colour a greyscale image by interpolating through colour stops from dark to light."""
    lut: list[int] = []
    for channel in range(3):
        for value in range(256):
            position = value / 255 * (len(stops) - 1)
            index = min(int(position), len(stops) - 2)
            t = position - index
            lut.append(round(stops[index][channel] * (1 - t) + stops[index + 1][channel] * t))
    # An RGB point table is three 256-entry tables, one per channel; the three channels of a grey image are equal.
    return gray.convert("RGB").point(lut)


def _band_map(gray: Image.Image, colours: Sequence[Colour]) -> Image.Image:
    """Posterize a greyscale image into len(colours) flat bands, dark to light."""
    count = len(colours)
    lut = [colours[value * count // 256][channel] for channel in range(3) for value in range(256)]
    return gray.convert("RGB").point(lut)


def _channel_curves(image: Image.Image, ranges: Sequence[tuple[int, int]]) -> Image.Image:
    """Remap each channel linearly from 0-255 to its (low, high) range: lifts blacks, dims whites, tints."""
    lut = [round(low + value * (high - low) / 255) for low, high in ranges for value in range(256)]
    return image.point(lut)


def _edge_mask(image: Image.Image, gain: float, detail: int = 512) -> Image.Image:
    """Contour strength ("L", white = strong edge) measured at about `detail` px on the long side.

    Working at a fixed resolution keeps line thickness and noise rejection the same for any input size.
    """
    scale = max(image.size) / detail
    small = image
    if scale > 1:
        small = image.resize(
            (max(1, round(image.width / scale)), max(1, round(image.height / scale))), Image.Resampling.BOX
        )
    gray = small.convert("L").filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.SMOOTH_MORE)
    edges = gray.filter(ImageFilter.FIND_EDGES)
    # Pillow copies the outermost pixels unfiltered: blank them so the frame is not taken for an edge.
    edges = ImageOps.expand(ImageOps.crop(edges, 1), border=1, fill=0) if min(edges.size) > 2 else edges
    # Ignore weak gradients (sensor noise, paper texture) before amplifying.
    edges = edges.point(lambda v: min(255, round(max(0, v - 6) * gain)))
    return edges.resize(image.size, Image.Resampling.BILINEAR)


# --------------------------------------------------------------------------- styles


def _watercolor(image: Image.Image, variant: int) -> Image.Image:
    # Washes: average and median-filter at low resolution, then keep few colours, so pigment pools in soft patches.
    factor = max(1, max(image.size) // (160, 220, 120)[variant % 3])
    small = image.reduce(factor).filter(ImageFilter.MedianFilter(5))
    washes = small.quantize(24, dither=Image.Dither.NONE).convert("RGB")
    washes = washes.resize(image.size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(factor / 4))
    # Thin paint: the white paper shows through, highlights become bare paper.
    tint = ((255, 250, 240), (240, 248, 255), (255, 244, 248), (248, 255, 244))[variant % 4]
    washes = ImageChops.multiply(ImageEnhance.Color(washes).enhance(1.15), Image.new("RGB", image.size, tint))
    washes = Image.blend(washes, Image.new("RGB", image.size, "white"), 0.3).point(lambda v: min(255, v * 9 // 8))
    # Pigment gathers at the rim of each wash where it dried: darken a band along the wash borders.
    rims = _edge_mask(washes, 6.0, detail=500).point(lambda v: 255 - v * 2 // 5)
    # A faint pencil underdrawing from the original contours.
    pencil = _edge_mask(image, 3.0, detail=900).point(lambda v: 255 - v // 4)
    painted = ImageChops.multiply(washes, ImageChops.multiply(rims, pencil).convert("RGB"))
    # Paper: fine grain plus large blotches where the paint went on thicker or thinner.
    paper = _noise(image.size, f"watercolor-paper:{variant}", cell=2).point(lambda v: 230 + v * 25 // 255)
    blotches = _noise(image.size, f"watercolor-blotch:{variant}", cell=max(8, max(image.size) // 12))
    blotches = blotches.point(lambda v: 210 + v * 45 // 255)
    return ImageChops.multiply(painted, ImageChops.multiply(paper, blotches).convert("RGB"))


def _sketch(image: Image.Image, variant: int) -> Image.Image:
    gray = ImageOps.autocontrast(image.convert("L"), cutoff=1)
    # Outlines: pixels darker than their blurred neighbourhood (a cheap "colour dodge" pencil trick).
    radius = max(1.0, max(image.size) / 400) * (1.5, 2.5, 2.0)[variant % 3]
    blurred = gray.filter(ImageFilter.GaussianBlur(radius))
    lines = ImageOps.invert(ImageChops.subtract(blurred, gray, scale=1 / (3 + variant % 5)))
    # Shading: diagonal strokes appear wherever the stroke noise is weaker than the local darkness.
    darkness = ImageOps.invert(gray).point(lambda v: max(0, v - 70))
    strokes = _streaks(
        image.size, f"sketch:{variant}", length=max(6, max(image.size) // 60), thickness=1, rising=variant % 2 == 0
    )
    hatching = ImageChops.subtract(darkness, strokes).point(lambda v: 150 if v > 0 else 255)
    drawing = ImageChops.multiply(lines, hatching)
    graphite, paper = ((45, 45, 55), (250, 248, 240)) if variant % 2 == 0 else ((60, 50, 45), (245, 240, 228))
    return ImageOps.colorize(drawing, black=graphite, white=paper)


_SEPIA_TONES: tuple[tuple[Colour, Colour, Colour], ...] = (
    ((40, 26, 13), (162, 118, 72), (255, 244, 220)),
    ((30, 20, 16), (140, 100, 70), (250, 236, 214)),
    ((52, 32, 12), (180, 128, 66), (255, 248, 226)),
)


def _sepia(image: Image.Image, variant: int) -> Image.Image:
    gray = ImageOps.autocontrast(image.convert("L"), cutoff=1)
    gray = ImageEnhance.Contrast(gray).enhance((1.0, 1.2, 0.85, 1.35, 1.1)[variant % 5])
    # Every tone keeps red >= green >= blue; grain and vignette are applied equally to all channels.
    dark, mid, light = _SEPIA_TONES[variant % len(_SEPIA_TONES)]
    toned = ImageOps.colorize(gray, black=dark, white=light, mid=mid)
    return _add_grain(_vignette(toned, 0.25 + 0.1 * (variant % 2)), f"sepia:{variant}", 0.18)


# Channel weights for the greyscale conversion, like a coloured filter in front of black-and-white film.
_BW_FILTERS: tuple[tuple[float, float, float], ...] = (
    (0.299, 0.587, 0.114),  # neutral luminance
    (0.70, 0.25, 0.05),  # red filter: darker skies, brighter skin
    (0.20, 0.70, 0.10),  # green filter: brighter foliage
    (0.15, 0.35, 0.50),  # blue filter: moody, hazy
)


def _black_and_white(image: Image.Image, variant: int) -> Image.Image:
    red, green, blue = _BW_FILTERS[variant % len(_BW_FILTERS)]
    gray = ImageOps.autocontrast(image.convert("L", (red, green, blue, 0)), cutoff=0.5)
    gray = ImageEnhance.Contrast(gray).enhance((1.1, 1.3, 1.0, 1.45, 1.2)[variant % 5])
    return _add_grain(gray, f"bw:{variant}", 0.15).convert("RGB")


_POP_PALETTES: tuple[tuple[Colour, Colour, Colour, Colour], ...] = (
    ((25, 20, 60), (255, 40, 140), (255, 220, 0), (120, 235, 255)),
    ((20, 30, 20), (255, 110, 0), (60, 200, 255), (255, 250, 120)),
    ((40, 0, 50), (0, 170, 90), (255, 90, 200), (255, 240, 60)),
    ((10, 10, 10), (230, 0, 30), (0, 120, 255), (255, 255, 255)),
    ((30, 10, 0), (140, 60, 255), (255, 160, 0), (180, 255, 120)),
    ((0, 20, 70), (255, 210, 0), (255, 70, 70), (255, 200, 230)),
    ((50, 0, 30), (0, 210, 200), (255, 120, 160), (250, 250, 200)),
)


def _pop_art(image: Image.Image, variant: int) -> Image.Image:
    # Warhol grid: the picture four times in 2x2, each tile posterized into four (odd variants: three) loud flat
    # colours; the variant picks which palettes the tiles get.
    width, height = image.size
    half = (max(1, -(-width // 2)), max(1, -(-height // 2)))
    # Median first so noise in flat areas does not break up into speckles of alternating colours.
    gray = image.resize(half, Image.Resampling.BOX).convert("L").filter(ImageFilter.MedianFilter(5))
    gray = ImageOps.autocontrast(gray, cutoff=2)
    out = Image.new("RGB", image.size)
    for tile in range(4):
        palette = _POP_PALETTES[(3 * variant + tile) % len(_POP_PALETTES)]
        colours: tuple[Colour, ...] = palette if variant % 2 == 0 else (palette[0], *palette[2:])
        out.paste(_band_map(gray, colours), ((tile % 2) * (width // 2), (tile // 2) * (height // 2)))
    return out


_PICO8: tuple[Colour, ...] = (
    (0, 0, 0),
    (29, 43, 83),
    (126, 37, 83),
    (0, 135, 81),
    (171, 82, 54),
    (95, 87, 79),
    (194, 195, 199),
    (255, 241, 232),
    (255, 0, 77),
    (255, 163, 0),
    (255, 236, 39),
    (0, 228, 54),
    (41, 173, 255),
    (131, 118, 156),
    (255, 119, 168),
    (255, 204, 170),
)


def _pixel_art(image: Image.Image, variant: int) -> Image.Image:
    width, height = image.size
    block = max(3, round(max(4, max(image.size) / 96) * (1, 1.5, 0.75, 1.25, 2)[variant % 5]))
    grid = (-(-width // block), -(-height // block))
    small = ImageEnhance.Color(image.resize(grid, Image.Resampling.BOX)).enhance(1.3)
    # Odd variants use the fixed 16-colour PICO-8 console palette, even ones a small palette fitted to the picture.
    if variant % 2:
        palette = Image.new("P", (1, 1))
        palette.putpalette([channel for colour in _PICO8 for channel in colour])
        indexed = small.quantize(palette=palette, dither=Image.Dither.NONE)
    else:
        indexed = small.quantize((16, 12, 24)[variant // 2 % 3], dither=Image.Dither.NONE)
    blocks = indexed.convert("RGB").resize((grid[0] * block, grid[1] * block), Image.Resampling.NEAREST)
    return blocks.crop((0, 0, width, height))


def _oil_paint(image: Image.Image, variant: int) -> Image.Image:
    # Paint patches: few colours, then each pixel takes the most common colour around it (mode filter), which
    # merges detail into blobs with crisp borders, like loaded brush strokes.
    factor = max(1, max(image.size) // 640)
    indexed = image.reduce(factor).quantize(40, dither=Image.Dither.NONE)
    indices = Image.frombytes("L", indexed.size, indexed.tobytes())
    patches = indices.filter(ImageFilter.ModeFilter((5, 7)[variant % 2]))
    patches.putpalette(indexed.getpalette() or [])
    painted = patches.convert("RGB").resize(image.size, Image.Resampling.BICUBIC)
    painted = ImageEnhance.Color(painted.filter(ImageFilter.EDGE_ENHANCE)).enhance(
        (1.35, 1.15, 1.55, 1.25, 1.45)[variant % 5]
    )
    # Impasto: emboss diagonal brush streaks into a relief map and light the paint with it.
    strokes = _streaks(
        image.size,
        f"oil:{variant}",
        length=max(8, max(image.size) // 40),
        thickness=max(2, max(image.size) // 300),
        rising=variant % 3 != 1,
    )
    relief = strokes.filter(ImageFilter.EMBOSS).point(lambda v: 128 + (v - 128) * 3 // 5)
    return ImageChops.soft_light(painted, relief.convert("RGB"))


_NEON_TUBES: tuple[tuple[Colour, Colour], ...] = (
    ((255, 20, 200), (0, 240, 255)),
    ((60, 255, 60), (30, 120, 255)),
    ((255, 140, 0), (255, 0, 110)),
    ((0, 255, 210), (170, 60, 255)),
    ((255, 240, 60), (255, 40, 60)),
)


def _neon(image: Image.Image, variant: int) -> Image.Image:
    edges = _edge_mask(image, 5.0, detail=480)
    # Tube colours sweep across the picture, vertically or horizontally depending on the variant.
    sweep = Image.linear_gradient("L")
    sweep = (sweep.rotate(90) if variant % 2 else sweep).resize(image.size, Image.Resampling.BILINEAR)
    colours = _gradient_map(sweep, _NEON_TUBES[variant % len(_NEON_TUBES)])
    tubes = ImageChops.multiply(colours, edges.convert("RGB"))
    glow = tubes.filter(ImageFilter.GaussianBlur(max(image.size) / 120))
    glow = ImageEnhance.Brightness(glow).enhance(2.2)
    # The scene stays as a dim backdrop lit by the tube colours, so the glowing contours dominate.
    backdrop = ImageChops.multiply(image.convert("L").point(lambda v: v * 3 // 10).convert("RGB"), colours)
    return ImageChops.screen(ImageChops.screen(backdrop, glow), tubes)


def _cartoon(image: Image.Image, variant: int) -> Image.Image:
    # Flat paint: smooth at low resolution, then reduce to a handful of colours without dithering.
    small = image.reduce(2 + max(image.size) // 500).filter(ImageFilter.MedianFilter(5))
    smooth = small.resize(image.size, Image.Resampling.BILINEAR)
    flat = smooth.quantize((8, 12, 10)[variant % 3], dither=Image.Dither.NONE).convert("RGB")
    flat = ImageEnhance.Color(flat).enhance((1.5, 1.3, 1.7, 1.4, 1.6)[variant % 5])
    # Ink: dark outlines wherever the brightness of the original changes sharply.
    ink = _edge_mask(image, 4.0, detail=400).point(lambda v: 255 if v > 60 else 0)
    ink = ink.filter(ImageFilter.MedianFilter(3))  # drop isolated specks, keep lines
    ink = ink.filter(ImageFilter.MaxFilter(3)) if variant % 2 else ink  # bolder outlines
    ink_colour = ((25, 20, 30), (50, 25, 10))[variant % 2]
    return Image.composite(Image.new("RGB", image.size, ink_colour), flat, ink)


# Per-channel (low, high) output ranges: lifted blacks and dimmed whites give the faded print look.
_VINTAGE_TINTS: tuple[tuple[tuple[int, int], tuple[int, int], tuple[int, int]], ...] = (
    ((45, 255), (30, 235), (20, 195)),  # warm amber
    ((50, 250), (35, 225), (40, 215)),  # rose
    ((30, 235), (40, 240), (30, 205)),  # faded green
)


def _vintage(image: Image.Image, variant: int) -> Image.Image:
    faded = ImageEnhance.Color(image).enhance((0.6, 0.45, 0.75, 0.55, 0.7)[variant % 5])
    faded = _channel_curves(faded, _VINTAGE_TINTS[variant % len(_VINTAGE_TINTS)])
    aged = _vignette(faded, (0.45, 0.6)[variant % 2])
    return _add_grain(aged, f"vintage:{variant}", 0.28)


_BLUEPRINT_PAPERS: tuple[Colour, ...] = ((16, 58, 130), (10, 45, 95), (25, 75, 150))


def _blueprint(image: Image.Image, variant: int) -> Image.Image:
    paper_colour = _BLUEPRINT_PAPERS[variant % len(_BLUEPRINT_PAPERS)]
    paper = Image.new("RGB", image.size, paper_colour)
    draw = ImageDraw.Draw(paper)
    step = max(8, max(image.size) // (24, 32, 16, 20)[variant % 4])
    grid = tuple(min(255, c + 45) for c in paper_colour)
    for x in range(0, image.width, step):
        draw.line([(x, 0), (x, image.height)], fill=grid)
    for y in range(0, image.height, step):
        draw.line([(0, y), (image.width, y)], fill=grid)
    # Chalk-white drawing where the picture has contours.
    lines = _edge_mask(image, 5.0, detail=(500, 650)[variant % 2])
    return Image.composite(Image.new("RGB", image.size, (235, 245, 255)), paper, lines)


_VAPOR_STOPS: tuple[tuple[Colour, ...], ...] = (
    ((35, 0, 70), (255, 40, 160), (255, 170, 120), (120, 250, 255)),
    ((10, 10, 60), (130, 40, 220), (255, 90, 200), (255, 230, 160)),
    ((40, 0, 40), (0, 150, 200), (255, 110, 200), (250, 250, 210)),
    ((20, 0, 50), (255, 60, 120), (255, 200, 60), (200, 255, 250)),
    ((0, 30, 60), (90, 60, 200), (0, 220, 220), (255, 190, 230)),
)


def _vaporwave(image: Image.Image, variant: int) -> Image.Image:
    gray = ImageOps.autocontrast(image.convert("L"), cutoff=1)
    toned = _gradient_map(gray, _VAPOR_STOPS[variant % len(_VAPOR_STOPS)])
    # Misregistered CRT: push the red plane one way and the blue plane the other.
    shift = max(2, image.width // 200) * (1 + variant % 2)
    red, green, blue = toned.split()
    toned = Image.merge("RGB", (ImageChops.offset(red, shift, 0), green, ImageChops.offset(blue, -shift, 0)))
    # Scanlines: one darker row in every `period` (a 1-pixel-wide pattern stretched over the picture with NEAREST).
    period = max(3, image.height // 300)
    pattern = Image.new("L", (1, period), 255)
    pattern.putpixel((0, period - 1), 170)
    lines = pattern.resize((image.width, period * -(-image.height // period)), Image.Resampling.NEAREST)
    return ImageChops.multiply(toned, lines.crop((0, 0, image.width, image.height)).convert("RGB"))


# Labels and prompt keywords: shared/data/styles.json. The painters are code.
STYLES_FILE = Path(__file__).resolve().parent.parent.parent / "data" / "styles.json"
_PAINTERS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "watercolor": _watercolor,
    "sketch": _sketch,
    "sepia": _sepia,
    "black-and-white": _black_and_white,
    "pop-art": _pop_art,
    "pixel-art": _pixel_art,
    "oil-paint": _oil_paint,
    "neon": _neon,
    "cartoon": _cartoon,
    "vintage": _vintage,
    "blueprint": _blueprint,
    "vaporwave": _vaporwave,
}


def _load_styles() -> dict[str, Style]:
    declared = json.loads(STYLES_FILE.read_text(encoding="utf-8"))["styles"]
    if set(declared) != set(_PAINTERS):
        raise RuntimeError(f"{STYLES_FILE} and the painters disagree: {sorted(set(declared) ^ set(_PAINTERS))}")
    return {
        name: Style(name, entry["label"], tuple(entry["keywords"]), _PAINTERS[name]) for name, entry in declared.items()
    }


STYLES: dict[str, Style] = _load_styles()


# --------------------------------------------------------------------------- prompt matching


def _words(text: str) -> tuple[str, ...]:
    """Prompt normalized to words: NFKC, casefolded, accents stripped; punctuation separates words, '&' is a word."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    bare = "".join(c for c in unicodedata.normalize("NFD", folded) if not unicodedata.combining(c))
    return tuple(re.sub(r"(?:[^\w&]|_)+", " ", bare.replace("&", " & ")).split())


# Keywords as word tuples, longest first, so "retro game" (pixel art) beats "retro" (vintage) at the same spot.
_KEYWORDS: list[tuple[tuple[str, ...], str]] = sorted(
    ((_words(keyword), style.name) for style in STYLES.values() for keyword in style.keywords),
    key=lambda entry: -len(entry[0]),
)


def detect_style(prompt: str) -> str | None:
    """Name of the style the prompt asks for, or None.

    Matching is on a normalized prompt (NFKC, casefold, accents stripped) against English, French and Spanish
    keywords, on whole words only; when several styles are named, the one named earliest in the prompt wins.
    """
    words = _words(prompt)
    for start in range(len(words)):
        for keyword, name in _KEYWORDS:
            if words[start : start + len(keyword)] == keyword:
                return name
    return None


# --------------------------------------------------------------------------- fallback preview


def _ascii(text: str) -> str:
    """Text safe for Pillow's default font: accents dropped, other non-ASCII as '?', whitespace collapsed."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(bare.encode("ascii", "replace").decode("ascii").split())


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small fixed-size bitmap font
        return ImageFont.load_default()


def _caption_band(image: Image.Image, prompt: str) -> Image.Image:
    """Darken a band along the bottom and write 'Offline preview' and the (truncated) prompt in it."""
    width, height = image.size
    band = min(height, max(18, height // 12))
    top = height - band
    out = image.copy()
    out.paste(ImageEnhance.Brightness(image.crop((0, top, width, height))).enhance(0.2), (0, top))
    draw = ImageDraw.Draw(out)
    font = _font(max(9, min(band * 11 // 20, width // 11)))
    shown = _ascii(prompt)[:200]
    text = f'Offline preview - "{shown}"' if shown else "Offline preview"
    margin = max(2, band // 4)
    # Drop characters from the end of the prompt until the line fits; the ellipsis shows it was cut.
    if shown and draw.textlength(text, font=font) > width - 2 * margin:
        while len(text) > 20 and draw.textlength(text + '..."', font=font) > width - 2 * margin:
            text = text[:-1]
        text = text.rstrip() + '..."'
    draw.text((margin, top + band / 2), text, fill=(255, 255, 255), font=font, anchor="lm")
    return out


def _grade(image: Image.Image, variant: int) -> Image.Image:
    """A gentle grade that differs per variant (hue, saturation, warmth), never the identity."""
    rng = random.Random(f"preview:{variant}")
    hue = rng.choice((-1, 1)) * rng.uniform(10, 30)
    graded = ImageEnhance.Color(_shift_hue(image, hue)).enhance(rng.uniform(0.8, 1.3))
    warm = rng.randint(-20, 20)
    return _channel_curves(graded, ((max(0, warm), 255), (0, 255), (max(0, -warm), 255)))


def _preview(image: Image.Image, variant: int, prompt: str) -> Image.Image:
    return _caption_band(_grade(image, variant), prompt)


def stylize(image: Image.Image, style: str | None, variant: int, prompt: str) -> Image.Image:
    """Return a new RGB image of the same size as `image` in the given style.

    `variant` (0, 1, 2, ...) changes the parameters so that variations of one job visibly differ; the result is
    deterministic for the same inputs. style=None (a request the offline stylizer cannot perform) gives a gentle,
    variant-dependent colour grade with a band at the bottom saying "Offline preview" and the prompt, so nobody
    mistakes it for the AI result. Unknown style names raise ValueError naming the known styles.
    """
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown offline style {style!r}; known styles: {', '.join(STYLES)}")
    rgb = _to_rgb(image)
    if style is None:
        return _preview(rgb, variant, prompt)
    return STYLES[style].apply(rgb, variant)


# --------------------------------------------------------------------------- iteration: vary, refine


def _restyle(image: Image.Image, style: str | None, variant: int) -> Image.Image:
    """The style's painter, or for a request with no known style the preview's grade (no band)."""
    return _grade(image, variant) if style is None else STYLES[style].apply(image, variant)


def _jitter(image: Image.Image, variant: int) -> Image.Image:
    """A small per-variant nudge of hue, brightness and saturation."""
    rng = random.Random(f"jitter:{variant}")
    nudged = _shift_hue(image, rng.choice((-1, 1)) * rng.uniform(3, 8))
    nudged = ImageEnhance.Brightness(nudged).enhance(rng.uniform(0.94, 1.06))
    return ImageEnhance.Color(nudged).enhance(rng.uniform(0.9, 1.1))


def _recompose(image: Image.Image, variant: int) -> Image.Image:
    """The picture reframed: a shifted, tighter crop scaled back up, mirrored on odd variants, hue turned."""
    rng = random.Random(f"recompose:{variant}")
    width, height = image.size
    kept = rng.uniform(0.7, 0.8)  # share of each side the new framing keeps
    crop_w, crop_h = max(1, round(width * kept)), max(1, round(height * kept))
    left, top = round((width - crop_w) * rng.random()), round((height - crop_h) * rng.random())
    moved = image.crop((left, top, left + crop_w, top + crop_h)).resize(image.size, Image.Resampling.BICUBIC)
    moved = ImageOps.mirror(moved) if variant % 2 else moved
    return _shift_hue(moved, rng.choice((-1, 1)) * rng.uniform(25, 60))


# Variant offset for a strong variation: 7 is not 0 modulo 2, 3, 4 or 5 (the painters' variant cycles), so a
# strong variation never repeats the parameters of the variant with the same index.
_STRONG_OFFSET = 7
SUBTLE_BLEND = 0.3  # the largest share of the re-applied style in a subtle variation
SUBTLE_CHANGE = 8.0  # the most a subtle variation's style moves a pixel on average (0-255)


def vary(image: Image.Image, style: str | None, variant: int, prompt: str, strength: str | None) -> Image.Image:
    """A variation of `image` (a variation Varia made before) in `style`, changed a little or a lot.

    "subtle" (and None) blends a light re-application of the style into the picture and nudges its colours
    per variant; "strong" reframes the picture (shifted crop, mirror, hue) and paints it again with another
    variant of the style. style=None keeps the "Offline preview" band, so the result is still labelled.
    """
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown offline style {style!r}; known styles: {', '.join(STYLES)}")
    rgb = _to_rgb(image)
    if strength == "strong":
        varied = _restyle(_recompose(rgb, variant), style, variant + _STRONG_OFFSET)
    else:
        restyled = _restyle(rgb, style, variant)
        # A light re-application: at most SUBTLE_BLEND of it, less where the painter changes the picture a
        # lot (pop art tiles it again), so the style moves the picture by about SUBTLE_CHANGE at most.
        change = sum(ImageStat.Stat(ImageChops.difference(rgb, restyled)).mean) / 3
        blend = min(SUBTLE_BLEND, SUBTLE_CHANGE / change) if change > 0 else 0.0
        varied = _jitter(Image.blend(rgb, restyled, blend), variant)
    return _caption_band(varied, prompt) if style is None else varied


def refine(image: Image.Image, variant: int, quality: str | None = "high") -> Image.Image:
    """`image` re-rendered at a higher quality: speckle noise taken out, then edges and fine detail sharpened.

    The picture stays the same (a small, measurable change); `quality` "low" or "medium" sharpens less.
    """
    rgb = _to_rgb(image)
    if min(rgb.size) < 3:
        return ImageEnhance.Contrast(rgb).enhance(1.05)
    # Denoise: some of a 3x3 median, which takes out isolated specks and keeps thin lines.
    clean = Image.blend(rgb, rgb.filter(ImageFilter.MedianFilter(3)), 0.4)
    radius = max(1.5, max(rgb.size) / 350) * (1.0, 1.3, 0.85)[variant % 3]
    percent = {"low": 40, "medium": 70}.get(quality or "high", 110)
    return clean.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=2))


# --------------------------------------------------------------------------- a new scene from a picture's palette


def _luma(colour: Colour) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def palette_of(image: Image.Image, count: int = 6) -> list[Colour]:
    """The picture's main colours, dark to light (at least four: shades of the main one fill in)."""
    indexed = _to_rgb(image).resize((64, 64), Image.Resampling.BOX).quantize(count, dither=Image.Dither.NONE)
    flat = indexed.getpalette() or []
    used = sorted(indexed.getcolors() or [], reverse=True)
    colours: list[Colour] = []
    for _count, index in used:
        i = int(index)  # type: ignore[call-overload]  # P-mode indices
        colour = (flat[3 * i], flat[3 * i + 1], flat[3 * i + 2])
        if colour not in colours:
            colours.append(colour)
    main = colours[0] if colours else (128, 128, 128)
    for shade in ((0, 0, 0), (255, 255, 255), (40, 40, 40), (230, 230, 230)):
        if len(colours) >= 4:
            break
        colours.append(_mix(main, shade, 0.5))
    return sorted(colours, key=_luma)


def _ridge(width: int, base: float, amplitude: float, rng: random.Random) -> list[tuple[float, float]]:
    """The top edge of a range of hills: two sine waves of random phase across the width."""
    waves = [(rng.uniform(0.6, 1.6), rng.uniform(0, 6.3), 1.0), (rng.uniform(2.5, 4.5), rng.uniform(0, 6.3), 0.35)]
    step = max(1, width // 48)
    return [
        (x, base + amplitude * sum(w * math.sin(2 * math.pi * f * x / max(1, width) + p) for f, p, w in waves))
        for x in range(0, width + step, step)
    ]


def paint_scene(image: Image.Image, variant: int, seed: str = "") -> Image.Image:
    """A new landscape in the picture's colours, at its size: sky, sun, clouds, three ranges of hills, trees.

    None of the picture's pixels or layout are kept, only its palette: the offline way to "draw a new
    scene". `variant` and `seed` (the request) place the sun, the hills and the trees.
    """
    rgb = _to_rgb(image)
    width, height = rgb.size
    colours = palette_of(rgb)
    rng = random.Random(f"scene:{variant}:{seed}")
    dark, light = colours[0], colours[-1]
    vivid = max(colours, key=lambda c: max(c) - min(c))
    horizon = colours[len(colours) // 2]
    # Sky: light at the top by day, light at the horizon at dusk (odd variants).
    stops = (
        (light, _mix(light, horizon, 0.5), horizon) if variant % 2 == 0 else (horizon, _mix(light, horizon, 0.4), light)
    )
    canvas = _gradient_map(Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR), stops)
    draw = ImageDraw.Draw(canvas)
    unit = min(width, height)
    sun_x, sun_y, radius = (
        rng.uniform(0.15, 0.85) * width,
        rng.uniform(0.1, 0.3) * height,
        rng.uniform(0.06, 0.11) * unit,
    )
    draw.ellipse(
        [sun_x - radius * 1.6, sun_y - radius * 1.6, sun_x + radius * 1.6, sun_y + radius * 1.6],
        fill=_mix(vivid, light, 0.7),
    )
    draw.ellipse(
        [sun_x - radius, sun_y - radius, sun_x + radius, sun_y + radius], fill=_mix(vivid, (255, 255, 255), 0.3)
    )
    for _ in range(rng.randint(2, 4)):
        cx, cy, size = rng.uniform(0, width), rng.uniform(0.05, 0.35) * height, rng.uniform(0.05, 0.1) * unit
        for dx in (-1.2, 0.0, 1.2):
            draw.ellipse([cx + dx * size - size, cy - size * 0.6, cx + dx * size + size, cy + size * 0.6], fill=light)
    # Hills, back to front: paler (further away) to darker.
    hill_colours = [_mix(c, light, haze) for c, haze in zip(colours[1:4][::-1], (0.45, 0.25, 0.0), strict=False)]
    front: list[tuple[float, float]] = []
    for layer, colour in enumerate(hill_colours):
        front = _ridge(width, height * (0.5 + 0.13 * layer), height * (0.09 - 0.015 * layer), rng)
        draw.polygon([*front, (width, height), (0, height)], fill=colour)
    # Trees on the nearest hill: trunks and triangular crowns in the darkest colour.
    for _ in range(rng.randint(2, 5)):
        x, y = front[rng.randrange(len(front))]
        tall = rng.uniform(0.08, 0.16) * height
        draw.rectangle([x - tall * 0.05, y - tall * 0.3, x + tall * 0.05, y + tall * 0.1], fill=dark)
        draw.polygon(
            [(x - tall * 0.25, y - tall * 0.25), (x, y - tall), (x + tall * 0.25, y - tall * 0.25)],
            fill=_mix(dark, vivid, 0.3),
        )
    return canvas


# --------------------------------------------------------------------------- output shape and previews

ASPECTS: dict[str, tuple[int, int]] = {"square": (1, 1), "landscape": (3, 2), "portrait": (2, 3)}


def _parse_size(size: str | None) -> tuple[int, int] | None:
    match = re.fullmatch(r"([1-9][0-9]*)x([1-9][0-9]*)", size.strip().lower()) if size else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def reshape(image: Image.Image, aspect: str = "auto", size: str | None = None) -> Image.Image:
    """`image` centre-cropped to the asked shape: `size` "WxH" (scaled down to it when the crop is larger,
    never up), else `aspect` square (1:1), landscape (3:2) or portrait (2:3); "auto" keeps the image as it is."""
    exact = _parse_size(size)
    target = exact or ASPECTS.get(aspect)
    if target is None:
        return image
    width, height = image.size
    if width * target[1] > height * target[0]:  # wider than the target: keep the height
        crop = (max(1, round(height * target[0] / target[1])), height)
    else:
        crop = (width, max(1, round(width * target[1] / target[0])))
    left, top = (width - crop[0]) // 2, (height - crop[1]) // 2
    out = image.crop((left, top, left + crop[0], top + crop[1])) if crop != image.size else image
    if exact is not None and exact[0] <= crop[0] and exact[1] <= crop[1] and exact != crop:
        out = out.resize(exact, Image.Resampling.LANCZOS)
    return out


def coarse(image: Image.Image, factor: int) -> Image.Image:
    """A coarse preview of `image`: averaged down by `factor` and scaled back up to its size."""
    width, height = image.size
    small = image.resize((max(1, width // factor), max(1, height // factor)), Image.Resampling.BOX)
    return small.resize(image.size, Image.Resampling.BILINEAR)
