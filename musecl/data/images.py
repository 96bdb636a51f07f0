"""Decoding a bundle image to 8-bit RGB, the one way every consumer (validator, image caches) does it.

Pillow's own ``Image.convert("RGB")`` clips high-depth pixels instead of scaling them: a 16-bit grey PNG (mode
``I;16``, values 0..65535) becomes almost entirely white. `to_rgb8` scales by the image's true bit depth instead
(16-bit: ``value >> 8``), converts float images (mode ``F``) with values in [0, 1] to ``round(255 * value)`` and
refuses float images outside [0, 1] (their scale is unknown), and drops an alpha channel (the colour values are kept).
`conversion_note` names what was converted, so the validator can count and report it instead of accepting it quietly.
Pillow itself already reads 16-bit RGB(A) PNGs as 8-bit by their high byte, which is the same scaling.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# Modes Pillow reads as more than 8 bits per sample: grey integer modes and 32-bit float.
HIGH_DEPTH_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;32", "I;32L", "I;32B", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
TIFF_BITS_PER_SAMPLE = 258  # the TIFF tag holding the bit depth of a mode "I" image


def bit_depth(img: Image.Image) -> int:
    """Bits per sample of a high-depth integer image (16 for ``I;16*``; the file's own depth for mode ``I``).

    Mode ``I`` (32-bit integers in Pillow) is how Pillow reads 16-bit PNGs in some versions and 16- or 32-bit TIFFs:
    the TIFF's BitsPerSample tag is used when present, 16 for a PNG (the deepest PNG), and otherwise 16 when every
    value fits in 16 bits, else 32.
    """
    mode = img.mode
    if mode.startswith("I;16"):
        return 16
    if mode.startswith("I;32"):
        return 32
    tags = getattr(img, "tag_v2", None)
    if tags is not None and TIFF_BITS_PER_SAMPLE in tags:
        bits = tags[TIFF_BITS_PER_SAMPLE]
        bits = bits[0] if isinstance(bits, tuple) else bits
        return int(bits)
    if img.format == "PNG":
        return 16
    top = np.asarray(img).max(initial=0)
    return 16 if top < 2**16 else 32


def conversion_note(img: Image.Image) -> str | None:
    """What `to_rgb8` changes beyond a lossless expansion to RGB: None for RGB, grey, palette without transparency."""
    mode = img.mode
    if mode in HIGH_DEPTH_MODES:
        if mode == "F":
            return "32-bit float (mode F) scaled from [0, 1] to 8 bits"
        bits = bit_depth(img)
        return f"{bits}-bit grey (mode {mode}) scaled to 8 bits (value >> {bits - 8})"
    if mode in ALPHA_MODES or (mode in ("P", "L") and "transparency" in img.info):
        return f"transparency ({mode}) dropped, colours kept"
    if mode not in ("RGB", "L", "P", "1"):
        return f"mode {mode} converted to RGB"
    return None


def to_rgb8(img: Image.Image) -> Image.Image:
    """`img` as an 8-bit RGB image, high-depth samples scaled by their bit depth (not clipped).

    Raises ValueError for a float image with values outside [0, 1] or an integer image with negative values, whose
    8-bit meaning is unknown.
    """
    mode = img.mode
    if mode == "RGB":
        return img.convert("RGB")  # a loaded copy, usable after the file is closed (as for every other mode)
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite = values[np.isfinite(values)]
        if len(finite) < values.size or (finite.size and (finite.min() < 0 or finite.max() > 1)):
            low, high = (float(np.nanmin(values)), float(np.nanmax(values))) if finite.size else (np.nan, np.nan)
            raise ValueError(f"float image (mode F) with values in [{low:.6g}, {high:.6g}] or non-finite ones; expected "
                             "values in [0, 1] (or save it as an 8- or 16-bit image)")
        grey = np.round(values * 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in HIGH_DEPTH_MODES:
        bits = bit_depth(img)
        values = np.asarray(img).astype(np.int64)
        if values.size and values.min() < 0:
            raise ValueError(f"{bits}-bit grey image (mode {mode}) with negative values (min {int(values.min())}); "
                             "expected unsigned values")
        grey = np.minimum(values >> (bits - 8), 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in ("P", "L") and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def decode_rgb8(path) -> np.ndarray:
    """The image at `path` as an (H, W, 3) uint8 array, converted by `to_rgb8`."""
    with Image.open(path) as img:
        return np.asarray(to_rgb8(img), dtype=np.uint8)
