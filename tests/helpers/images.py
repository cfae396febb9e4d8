"""A written image's format and pixel size, read from its header with Pillow (which matplotlib
depends on)."""

from pathlib import Path
from typing import Tuple

from PIL import Image


def png_size(path: Path) -> Tuple[int, int]:
    """``(width, height)`` in pixels of the PNG at ``path``; fails if the file is no PNG."""
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path} is {image.format}, not a PNG"
        return image.size
