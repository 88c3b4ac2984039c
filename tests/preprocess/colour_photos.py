"""Colour photographs, a saturated fine-detail case made from them, and the fidelity reference.

Shared by tests/preprocess/test_colour.py (the default subsampling's bound) and
benchmarks/bench_subsampling.py (the table behind the default).

The reference is what a perfect stage 1 would store: the source file decoded at full resolution by
Pillow (no draft-mode scaled IDCT), each channel resized in float32 with Pillow's antialiased
bicubic (its kernel widens with the shrink factor, as `convert.RESAMPLE` does) so the shorter side
is exactly `size`, then the central `size` square cropped, with no rounding and no re-encoding. A
stored image's PSNR is measured against it in float64.
"""

import io

import numpy as np
from PIL import Image
from PIL import ImageEnhance
from skimage import data as skimage_data

# scikit-image's colour photographs: scenes, then a telescope, a microscope and a fundus camera's.
SCENES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right")
PHOTOGRAPHS = SCENES + ("hubble_deep_field", "immunohistochemistry", "retina")
SOURCE_QUALITY = 95
SATURATION = 3.0  # Pillow's ImageEnhance.Color factor: toy-shop colours from ordinary scenes
STRIPE_WIDTH = 3  # source pixels per hue stripe: 1.5 stored pixels for a 512-pixel-wide photo


def photograph(name):
  """One photograph as uint8 RGB."""
  if name.startswith("motorcycle_"):
    left, right, _ = skimage_data.stereo_motorcycle()
    return left if name == "motorcycle_left" else right
  return getattr(skimage_data, name)()


def saturated(pixels, factor=SATURATION):
  """The photograph with its colour saturation multiplied by `factor` (clipped by Pillow)."""
  return np.asarray(ImageEnhance.Color(Image.fromarray(pixels)).enhance(factor))


def hue_stripes(pixels, width=STRIPE_WIDTH):
  """Full saturation, hue turned half a turn in every other `width`-pixel column.

  Neighbouring stripes have about the same brightness and opposite colours, so the detail is in the
  chroma alone: what 4:2:0 subsampling averages away (like a striped toy or a printed fabric).
  """
  hue, _, value = (np.asarray(c, np.int32) for c in Image.fromarray(pixels).convert("HSV").split())
  stripe = (np.arange(pixels.shape[1]) // width) % 2
  hue = (hue + 128 * stripe[None, :]) % 256
  channels = [Image.fromarray(c.astype(np.uint8)) for c in (hue, np.full_like(hue, 255), value)]
  return np.asarray(Image.merge("HSV", channels).convert("RGB"))


def fine_detail_cases():
  """{name: uint8 RGB}: every scene saturated, and two scenes striped."""
  cases = {f"{name}, saturated x{SATURATION:g}": saturated(photograph(name)) for name in SCENES}
  for name in ("astronaut", "coffee"):
    cases[f"{name}, hue stripes {STRIPE_WIDTH} px"] = hue_stripes(photograph(name))
  return cases


def all_cases():
  """{name: uint8 RGB}: the photographs, then the fine-detail cases."""
  return {**{name: photograph(name) for name in PHOTOGRAPHS}, **fine_detail_cases()}


def source_jpeg(pixels, subsampling, quality=SOURCE_QUALITY):
  """The pixels as a source file, a JPEG with the given chroma subsampling."""
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
  return buffer.getvalue()


def reference(data, size=256):
  """Float32 [size, size, 3]: the source decoded in full, resized in float, centre-cropped."""
  with Image.open(io.BytesIO(data)) as source:
    pixels = np.asarray(source.convert("RGB"), np.float32)
  height, width = pixels.shape[:2]
  if width <= height:
    resized = (size, max(size, round(height * size / width)))
  else:
    resized = (max(size, round(width * size / height)), size)
  left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
  channels = [
      Image.fromarray(pixels[..., c], "F").resize(resized, Image.Resampling.BICUBIC)
      for c in range(3)
  ]
  return np.stack([np.asarray(c)[top:top + size, left:left + size] for c in channels], axis=-1)


def psnr(stored, ref):
  """PSNR in dB of uint8 `stored` pixels against a float reference."""
  mse = np.mean((stored.astype(np.float64) - ref)**2)
  return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))
