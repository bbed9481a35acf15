"""Tests for the offline Pillow stylizer: every style paints something recognisable, deterministically."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from shared.adapters.providers.offline_styles import STYLES, detect_style, stylize

PREVIEW_PROMPT = "put this dog beside the Eiffel Tower"


def _scene(width: int = 240, height: int = 180) -> Image.Image:
    """A small picture with a colour gradient, flat shapes, hard edges and some fine texture."""
    red = Image.linear_gradient("L").resize((width, height))
    blue = red.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    img = Image.merge("RGB", (red, Image.new("L", (width, height), 140), blue))
    draw = ImageDraw.Draw(img)
    draw.rectangle([width // 8, height // 2, width * 3 // 8, height * 7 // 8], fill=(200, 40, 40))
    draw.polygon(
        [(width // 10, height // 2), (width // 4, height // 4), (width * 2 // 5, height // 2)], fill=(90, 50, 30)
    )
    draw.ellipse([width * 3 // 5, height // 10, width * 4 // 5, height * 4 // 10], fill=(250, 220, 60))
    draw.rectangle([width // 2, height * 2 // 3, width - 10, height - 10], fill=(30, 140, 60))
    for x in range(width // 2, width - 10, 6):  # fence: fine regular detail
        draw.line([(x, height * 2 // 3), (x, height - 10)], fill=(240, 240, 230), width=2)
    return img


@pytest.fixture(scope="module")
def source() -> Image.Image:
    return _scene()


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, averaged over channels (0-255)."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def _brightness(img: Image.Image) -> float:
    return float(ImageStat.Stat(img.convert("L")).mean[0])


def _block_size(img: Image.Image) -> int:
    """Largest b for which sampling one pixel per b x b block and scaling back up with NEAREST is lossless."""
    width, height = img.size
    for block in range(32, 1, -1):
        if width % block or height % block:
            continue
        grid = img.resize((width // block, height // block), Image.Resampling.NEAREST)
        if grid.resize(img.size, Image.Resampling.NEAREST).tobytes() == img.tobytes():
            return block
    return 1


def test_there_are_at_least_ten_styles_with_labels_and_keywords() -> None:
    assert len(STYLES) >= 10
    for name, style in STYLES.items():
        assert style.name == name and style.label and style.keywords


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_returns_a_changed_rgb_image_of_the_same_size(source: Image.Image, style: str) -> None:
    out = stylize(source, style, 0, f"as {style}")
    assert out.mode == "RGB" and out.size == source.size
    assert _difference(out, source) > 10, style


@pytest.mark.parametrize("style", [None, *sorted(STYLES)])
def test_same_inputs_give_identical_output_and_the_input_is_untouched(source: Image.Image, style: str | None) -> None:
    before = source.tobytes()
    first = stylize(source, style, 1, PREVIEW_PROMPT)
    assert stylize(source, style, 1, PREVIEW_PROMPT).tobytes() == first.tobytes()
    assert source.tobytes() == before


@pytest.mark.parametrize("style", [None, *sorted(STYLES)])
def test_variants_differ(source: Image.Image, style: str | None) -> None:
    outs = [stylize(source, style, variant, PREVIEW_PROMPT) for variant in range(4)]
    # Visibly: compared after averaging 15 x 15 blocks, so a different grain seed alone is not enough.
    assert _difference(outs[0].reduce(15), outs[1].reduce(15)) > 1.5, style
    for a, b in itertools.combinations(outs, 2):
        assert a.tobytes() != b.tobytes(), style


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "1", "CMYK", "I;16"])
@pytest.mark.parametrize("style", [None, "watercolor", "neon", "pixel-art"])
def test_any_input_mode_gives_rgb(source: Image.Image, mode: str, style: str | None) -> None:
    out = stylize(source.convert(mode), style, 0, PREVIEW_PROMPT)
    assert out.mode == "RGB" and out.size == source.size


@pytest.mark.parametrize("style", [None, *sorted(STYLES)])
def test_tiny_and_odd_sized_images_keep_their_size(source: Image.Image, style: str | None) -> None:
    for size in [(1, 1), (3, 2), (17, 31), (241, 7)]:
        assert stylize(source.resize(size), style, 2, PREVIEW_PROMPT).size == size


def test_transparent_areas_become_white_not_black() -> None:
    clear = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    assert _brightness(stylize(clear, "black-and-white", 0, "")) > 200


@pytest.mark.parametrize("variant", range(4))
def test_sepia_is_warm_brown(source: Image.Image, variant: int) -> None:
    out = stylize(source, "sepia", variant, "")
    red, green, blue = ImageStat.Stat(out).mean
    assert red >= green >= blue and red - blue > 15
    # A single brown tone everywhere: (almost) no pixel has more green than red or more blue than green.
    r, g, b = out.split()
    off_tone = ImageChops.lighter(ImageChops.subtract(g, r), ImageChops.subtract(b, g)).histogram()
    assert sum(off_tone[3:]) < 0.01 * out.width * out.height


@pytest.mark.parametrize("variant", range(4))
def test_black_and_white_has_no_colour_at_all(source: Image.Image, variant: int) -> None:
    red, green, blue = stylize(source, "black-and-white", variant, "").split()
    assert ImageChops.difference(red, green).getbbox() is None
    assert ImageChops.difference(green, blue).getbbox() is None


@pytest.mark.parametrize("variant", range(5))
def test_pixel_art_is_blocky_with_few_colours(source: Image.Image, variant: int) -> None:
    out = stylize(source, "pixel-art", variant, "")
    assert _block_size(out) >= 3
    colours = out.getcolors(maxcolors=256)
    assert colours is not None and len(colours) <= 24


@pytest.mark.parametrize("variant", range(4))
def test_neon_is_dark_with_bright_coloured_edges(source: Image.Image, variant: int) -> None:
    out = stylize(source, "neon", variant, "")
    assert _brightness(out) < _brightness(source) * 0.5
    _, saturation, value = out.convert("HSV").split()
    assert ImageStat.Stat(value).extrema[0][1] > 200 and ImageStat.Stat(saturation).extrema[0][1] > 150


def test_pop_art_repeats_the_picture_in_a_two_by_two_grid_of_flat_palettes(source: Image.Image) -> None:
    out = stylize(source, "pop-art", 0, "")
    width, height = out.width // 2, out.height // 2
    tiles = [out.crop((x, y, x + width, y + height)) for y in (0, height) for x in (0, width)]

    def outlines(tile: Image.Image) -> Image.Image:
        """White where a pixel's colour differs from its right or lower neighbour."""
        changes = ImageChops.lighter(
            ImageChops.difference(tile, ImageChops.offset(tile, 1, 0)),
            ImageChops.difference(tile, ImageChops.offset(tile, 0, 1)),
        )
        red, green, blue = changes.split()
        return ImageChops.lighter(ImageChops.lighter(red, green), blue).point(lambda v: 255 if v else 0)

    for tile in tiles:
        colours = tile.getcolors(maxcolors=16)
        assert colours is not None and len(colours) <= 4  # flat, posterized
        assert _difference(tile, tiles[0]) > 30 or tile is tiles[0]  # each tile has its own palette
        # ... but the same picture: colour changes happen in the same places.
        assert ImageStat.Stat(ImageChops.difference(outlines(tile), outlines(tiles[0]))).mean[0] < 3


def test_cartoon_has_flat_colours_and_dark_outlines(source: Image.Image) -> None:
    out = stylize(source, "cartoon", 0, "")
    colours = out.getcolors(maxcolors=64)
    assert colours is not None and len(colours) <= 20
    histogram = out.convert("L").histogram()
    assert sum(histogram[:50]) > 0.01 * out.width * out.height  # ink lines


def test_sketch_is_nearly_grey_on_light_paper(source: Image.Image) -> None:
    out = stylize(source, "sketch", 0, "")
    _, saturation, _ = out.convert("HSV").split()
    assert ImageStat.Stat(saturation).mean[0] < 40 and _brightness(out) > _brightness(source)


def test_vintage_is_faded_and_has_a_vignette(source: Image.Image) -> None:
    out = stylize(source, "vintage", 0, "")
    assert ImageStat.Stat(out.convert("L")).stddev[0] < ImageStat.Stat(source.convert("L")).stddev[0]  # less contrast
    grass = (source.width // 2 + 20, source.height * 2 // 3 + 5, source.width - 15, source.height - 15)
    red, green, _ = ImageStat.Stat(out.crop(grass)).mean
    assert green > red  # colours are faded, not replaced by a single tone
    centre = out.crop((out.width // 3, out.height // 3, out.width * 2 // 3, out.height * 2 // 3))
    corner = out.crop((0, 0, out.width // 8, out.height // 8))
    source_corner = source.crop((0, 0, source.width // 8, source.height // 8))
    assert _brightness(corner) < _brightness(source_corner) - 15
    assert ImageStat.Stat(centre.convert("L")).extrema[0][0] > 10  # blacks are lifted


def test_a_request_it_cannot_paint_gets_a_labelled_preview(source: Image.Image) -> None:
    out = stylize(source, None, 0, PREVIEW_PROMPT)
    assert out.mode == "RGB" and out.size == source.size
    band = (0, out.height * 9 // 10, out.width, out.height)
    top = (0, 0, out.width, out.height // 10)
    assert _difference(out.crop(top), source.crop(top)) > 3  # graded, not a copy
    assert _difference(out.crop(band), source.crop(band)) > _difference(out.crop(top), source.crop(top)) + 20
    text = out.crop(band).convert("L")
    assert ImageStat.Stat(text).extrema[0][1] > 200 and _brightness(text) < 100  # light writing on a dark band


def test_preview_survives_prompts_the_default_font_cannot_draw(source: Image.Image) -> None:
    for prompt in ["", "漢字 ✓ émoji 🐶 " * 20, "x" * 5000, "tab\tand\nnewline"]:
        assert stylize(source, None, 3, prompt).size == source.size


def test_unknown_style_names_are_an_error_naming_the_known_ones(source: Image.Image) -> None:
    with pytest.raises(ValueError, match="watercolor") as raised:
        stylize(source, "cubism", 0, "")
    assert "cubism" in str(raised.value) and all(name in str(raised.value) for name in STYLES)


@pytest.mark.parametrize(
    ("prompt", "style"),
    [
        ("as a watercolour", "watercolor"),
        ("AQUARELLE", "watercolor"),
        ("à l'aquarelle", "watercolor"),
        ("À L’AQUARELLE, s'il vous plaît", "watercolor"),
        ("como acuarela", "watercolor"),
        ("make it a ＷＡＴＥＲＣＯＬＯＲ", "watercolor"),
        ("pixel-art", "pixel-art"),
        ("as 8-bit pixel art", "pixel-art"),
        ("in pop art style", "pop-art"),
        ("en noir et blanc", "black-and-white"),
        ("Blanco y Negro", "black-and-white"),
        ("b&w please", "black-and-white"),
        ("dibujo a LÁPIZ", "sketch"),
        ("Dibujo a lapiz", "sketch"),
        ("oleo", "oil-paint"),
        ("au crayon", "sketch"),
        ("as an old sepia photograph", "sepia"),
        ("peinture à l'huile", "oil-paint"),
        ("pintura al óleo", "oil-paint"),
        ("en néon", "neon"),
        ("like a comic book", "cartoon"),
        ("vintage look", "vintage"),
        ("as a blueprint", "blueprint"),
        ("vaporwave", "vaporwave"),
        ("a retro game look", "pixel-art"),  # the longer keyword wins over "retro" (vintage)
        ("neon, then watercolour", "neon"),  # the style named first wins
        ("watercolour, then neon", "watercolor"),
        ("put this dog beside the Eiffel Tower", None),
        ("a popular art gallery", None),  # whole words only
        ("a neonatal ward, oily skin", None),
        ("", None),
    ],
)
def test_detect_style(prompt: str, style: str | None) -> None:
    assert detect_style(prompt) == style


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_keyword_detects_its_own_style(style: str) -> None:
    for keyword in STYLES[style].keywords:
        assert detect_style(f"make it {keyword} please") == style, keyword
