"""Acquisition and lighting effects of the synthetic-city renderers.

`_acquisition` turns a drawn float RGB image into what a sensor delivers: exposure, white balance, haze, blur, pixel
noise, gamma and a JPEG round trip, with every parameter drawn from the image's generator (the ranges differ per
modality). `_cast_shadows` marks the pixels of a remote-sensing tile that lie in the shadow of a taller building or
tree for a given sun position.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image
from scipy import ndimage


def _acquisition(
    rgb: np.ndarray,
    rng: np.random.Generator,
    blur_px: tuple[float, float],
    noise_dn: tuple[float, float],
    jpeg_quality: tuple[int, int],
    haze: tuple[float, float],
) -> np.ndarray:
    """Camera/sensor effects on a float RGB image (0-255): exposure, white balance, haze, blur, noise, gamma, JPEG."""
    gain = rng.uniform(0.82, 1.15)
    balance = rng.uniform(0.93, 1.07, 3).astype(np.float32)
    gamma = rng.uniform(0.88, 1.14)
    haze_w = rng.uniform(*haze)
    haze_colour = np.array([198, 204, 214], dtype=np.float32) * rng.uniform(0.9, 1.1)
    sigma = rng.uniform(*blur_px)
    noise_sd = rng.uniform(*noise_dn)
    quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
    x = rgb.astype(np.float32) * (balance * np.float32(gain * (1.0 - haze_w))) + haze_colour * np.float32(haze_w)
    x = ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest", truncate=2.5)
    # Pixel noise: uniform with the drawn standard deviation (several times cheaper to draw than Gaussian noise).
    x += (rng.random(x.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(noise_sd * math.sqrt(12.0))
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    img = Image.fromarray(lut[np.clip(x + 0.5, 0, 255).astype(np.uint8)])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


def _cast_shadows(heights: np.ndarray, mpp: float, azimuth: float, tan_elev: float) -> np.ndarray:
    """Pixels in the shadow of something taller: march the height map away from the sun."""
    n = heights.shape[0]
    max_len = float(heights.max()) / tan_elev / mpp
    steps = int(min(math.ceil(max_len), n // 3))
    if steps < 1:
        return np.zeros_like(heights, dtype=bool)
    # Shadows fall away from the sun: east-west component along columns, north-south along rows (row 0 north).
    dx, dy = -math.sin(azimuth), math.cos(azimuth)
    top = np.zeros_like(heights)
    seen = set()
    for s in range(1, steps + 1):
        oy, ox = int(round(s * dy)), int(round(s * dx))
        if (oy, ox) in seen or abs(oy) >= n or abs(ox) >= n:
            continue
        seen.add((oy, ox))
        drop = np.float32(s * mpp * tan_elev)
        src = heights[max(0, -oy): n - max(0, oy), max(0, -ox): n - max(0, ox)]
        dst = top[max(0, oy): n - max(0, -oy), max(0, ox): n - max(0, -ox)]
        np.maximum(dst, src - drop, out=dst)
    return top > heights + 0.5
