"""How the conversion tests look at pixels: a plain reference of the paper's resize and crop, and
distances between images."""

import io

import numpy as np
from PIL import Image

from preprocess.conversion import convert

SIZE = 256


def reference_crop(image, size=SIZE):
  """Resize the shorter side to `size`, then crop the centre: the paper's recipe, done plainly."""
  width, height = image.size
  if width <= height:
    resized = (size, max(size, round(height * size / width)))
  else:
    resized = (max(size, round(width * size / height)), size)
  image = image.resize(resized, convert.RESAMPLE)
  left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
  return np.asarray(image.crop((left, top, left + size, top + size)).convert("RGB"))


def decoded(data):
  image = Image.open(io.BytesIO(data))
  image.load()  # reads the whole in-memory file; nothing is left open
  return image


def psnr(a, b):
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
  return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def mean_abs_diff(a, b):
  return np.abs(a.astype(np.float64) - b).mean()
