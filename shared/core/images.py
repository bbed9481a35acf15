"""Safe image handling: sniff the type, refuse bombs, apply then strip EXIF, normalize for the AI services.

Every image a user gives Varia passes through `normalize` before any service sees it. The
result is an RGB PNG whose longest side fits the image models (1536 px) and whose shortest
side meets AI Vision's minimum (50 px), with no metadata at all: GPS tags never leave.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

# Formats the services accept (AI Vision: JPEG, PNG, GIF, BMP, WEBP, TIFF; GPT-image: PNG, JPEG).
# We decode any of them and always send PNG.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

MAX_SIDE = 1536  # the largest side GPT-image models produce; larger sources only cost upload time
MIN_SIDE = 50  # AI Vision refuses images of 50 px or less on a side
MAX_SOURCE_SIDE = 16_000  # AI Vision's limit, and a sane bound for anything a user uploads
MAX_PIXELS = 64_000_000  # decompression-bomb limit: a 64 MP photo is already generous


class InvalidImage(ValueError):
    """The input is not an image Varia can use; the message says why and what to send instead."""


@dataclass(frozen=True)
class NormalizedImage:
    png: bytes
    width: int
    height: int
    original_format: str
    sha256: str


def sniff(data: bytes) -> str | None:
    """The image format named by the file's magic bytes, or None. Names and Content-Types lie."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    return None


def describe_non_image(data: bytes) -> str:
    """A short, human description of what a non-image upload looks like, for error messages."""
    head = data[:512].lstrip()
    if not data:
        return "the file is empty"
    if head.startswith(b"%PDF"):
        return "it is a PDF document"
    if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
        return "it is an SVG drawing (vector images are not supported)"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "it is a HEIC/AVIF photo (export it as JPEG or PNG)"
    try:
        head.decode("utf-8")
        return "it looks like a text file"
    except UnicodeDecodeError:
        return "its content is not a known image format"


def check_header(data: bytes) -> tuple[str, int, int]:
    """Cheap validation without decoding pixels: format, width, height. Raises InvalidImage."""
    fmt = sniff(data)
    if fmt is None:
        raise InvalidImage(f"Not an image: {describe_non_image(data)}. Send a JPEG, PNG, GIF, BMP, WEBP or TIFF.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"The image is too large to process safely ({exc}).") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken headers
        raise InvalidImage(f"The {fmt} file is damaged and cannot be read ({exc}).") from None
    if width > MAX_SOURCE_SIDE or height > MAX_SOURCE_SIDE:
        raise InvalidImage(f"The image is {width}x{height}; the largest side may be {MAX_SOURCE_SIDE} px.")
    if width * height > MAX_PIXELS:
        raise InvalidImage(
            f"The image has {width * height / 1e6:.0f} megapixels; the limit is {MAX_PIXELS // 1_000_000}."
        )
    if min(width, height) <= MIN_SIDE:
        raise InvalidImage(f"The image is {width}x{height}; each side must be larger than {MIN_SIDE} px.")
    if min(width, height) * min(1.0, MAX_SIDE / max(width, height)) <= MIN_SIDE:
        raise InvalidImage(
            f"The image is {width}x{height}: too thin once fitted to {MAX_SIDE} px "
            f"(each side must stay above {MIN_SIDE} px). Crop it closer to 3:1 or squarer."
        )
    return fmt, width, height


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of letting convert() clip to white.
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def normalize(data: bytes, max_side: int = MAX_SIDE) -> NormalizedImage:
    """Decode safely, apply EXIF orientation, drop all metadata, fit to `max_side`, encode PNG."""
    fmt, width, height = check_header(data)
    scale = min(1.0, max_side / max(width, height))
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit: make that an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                if fmt == "JPEG" and scale < 1:
                    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, far cheaper than decoding every pixel;
                    # it keeps at least 3/4 of the final size, so quality does not suffer.
                    floor = 0.75 * scale
                    img.draft("RGB", (max(1, round(width * floor)), max(1, round(height * floor))))
                img.seek(0)  # animated GIF/WEBP: the first frame
                img.load()
                ImageOps.exif_transpose(img, in_place=True)
                rgb = img if img.mode == "RGB" else _to_rgb(img)
                if max(rgb.size) > max_side:
                    rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                out = io.BytesIO()
                rgb.save(out, format="PNG")  # no exif=, no pnginfo: nothing but pixels
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"The image is too large to process safely ({exc}).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"The {fmt} file is damaged or truncated and cannot be decoded ({exc}).") from None
    png = out.getvalue()
    return NormalizedImage(png, rgb.width, rgb.height, fmt, hashlib.sha256(png).hexdigest())


def open_png(data: bytes) -> Image.Image:
    """Open an image Varia stored itself (already normalized)."""
    img = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
    img.load()
    return img


def encode_png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
