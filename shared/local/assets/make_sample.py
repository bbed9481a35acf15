"""Draws Varia's demo image (a meadow with a house, a tree and a dog-like friend) with Pillow.

Run `python -m shared.local.assets.make_sample` to recreate shared/local/assets/sample-meadow.png.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

SAMPLE = Path(__file__).with_name("sample-meadow.png")


def draw_sample(width: int = 768, height: int = 512) -> Image.Image:
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    for y in range(height):  # sky fading into the horizon
        t = y / height
        draw.line([(0, y), (width, y)], fill=(int(110 + 120 * t), int(170 + 60 * t), int(235 - 20 * t)))
    draw.ellipse([600, 50, 690, 140], fill=(255, 214, 90))  # sun
    draw.polygon([(0, 330), (220, 250), (460, 320), (768, 240), (768, 512), (0, 512)], fill=(88, 160, 76))
    draw.rectangle([0, 380, width, height], fill=(70, 140, 60))
    draw.rectangle([120, 250, 300, 390], fill=(214, 90, 70))  # house
    draw.polygon([(105, 255), (210, 170), (315, 255)], fill=(120, 60, 50))
    draw.rectangle([190, 320, 230, 390], fill=(90, 60, 40))
    draw.rectangle([140, 280, 175, 310], fill=(250, 240, 200))
    draw.rectangle([500, 260, 525, 400], fill=(110, 75, 45))  # tree
    draw.ellipse([445, 170, 585, 300], fill=(46, 120, 56))
    draw.ellipse([380, 400, 470, 450], fill=(150, 100, 60))  # dog: body, head, ear, legs
    draw.ellipse([450, 370, 500, 415], fill=(160, 110, 70))
    draw.ellipse([452, 372, 470, 400], fill=(100, 65, 40))
    draw.ellipse([484, 385, 490, 391], fill=(20, 20, 20))
    for x in (392, 420, 440, 458):
        draw.rectangle([x, 440, x + 8, 470], fill=(130, 85, 50))
    return img


if __name__ == "__main__":
    draw_sample().save(SAMPLE, optimize=True)
    print(SAMPLE)
