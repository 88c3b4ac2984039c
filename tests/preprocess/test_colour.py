"""The stored JPEG keeps the source's colour: the default subsampling against the 30 dB bound.

The photographs and the fine-detail cases, and the full-resolution reference they are measured
against, are defined in colour_photos.py (benchmarks/bench_subsampling.py prints the whole table).
"""

import io
import json
import pathlib
import subprocess
import sys

import pytest
from PIL import Image
from PIL import JpegImagePlugin

from preprocess.conversion import convert
from tests import helpers
from tests.preprocess import colour_photos

REPO = pathlib.Path(__file__).resolve().parents[2]
MIN_PSNR_DB = 30.0  # the bound: every stored image this close to the reference
# `JpegImagePlugin.get_sampling`'s codes
SAMPLING_CODES = {"4:4:4": 0, "4:2:0": 2}


@pytest.fixture(scope="module")
def cases():
  return colour_photos.all_cases()


def stored_psnrs(cases, source_subsampling, **kwargs):
  """{name: PSNR of the stored image} for each case saved as a source JPEG, then converted."""
  psnrs = {}
  for name, pixels in cases.items():
    data = colour_photos.source_jpeg(pixels, source_subsampling)
    stored = convert.convert_image(data, **kwargs).pixels
    psnrs[name] = colour_photos.psnr(stored, colour_photos.reference(data))
  return psnrs


def sampling(encoded):
  with Image.open(io.BytesIO(encoded)) as image:
    return JpegImagePlugin.get_sampling(image)


@pytest.mark.parametrize("source_subsampling", ["4:4:4", "4:2:0"])
def test_the_default_keeps_every_photograph_within_the_bound(cases, source_subsampling):
  psnrs = stored_psnrs(cases, source_subsampling)
  below = {name: round(value, 1) for name, value in psnrs.items() if value < MIN_PSNR_DB}
  assert not below, f"below {MIN_PSNR_DB} dB with the default {convert.JPEG_SUBSAMPLING}: {below}"


def test_the_fine_detail_cases_are_what_4_2_0_loses(cases):
  # Without this the bound above could hold for a set of images that no subsampling troubles.
  fine_detail = {name: cases[name] for name in colour_photos.fine_detail_cases()}
  psnrs = stored_psnrs(fine_detail, "4:4:4", subsampling="4:2:0")
  assert min(psnrs.values()) < MIN_PSNR_DB - 10, psnrs
  assert sum(value < MIN_PSNR_DB for value in psnrs.values()) >= 4, psnrs


@pytest.mark.parametrize("subsampling", convert.JPEG_SUBSAMPLINGS)
def test_the_stored_jpeg_has_the_subsampling_asked_for(subsampling):
  data = colour_photos.source_jpeg(colour_photos.photograph("chelsea"), "4:2:0")
  assert sampling(convert.convert_image(
      data, subsampling=subsampling).encoded) == (SAMPLING_CODES[subsampling])
  assert sampling(convert.convert_image(data).encoded) == (SAMPLING_CODES[convert.JPEG_SUBSAMPLING])


def test_the_default_build_stores_the_default_and_records_it(built):
  output_dir, manifest = built
  assert manifest["args"]["jpeg_subsampling"] == convert.JPEG_SUBSAMPLING
  records = helpers.read_records(output_dir, "train")
  assert {sampling(r["image/encoded"]) for r in records
         } == {SAMPLING_CODES[convert.JPEG_SUBSAMPLING]}


def test_the_flag_reaches_the_records_and_the_manifest(sample, tmp_path):
  input_dir, _ = sample
  other = next(s for s in convert.JPEG_SUBSAMPLINGS if s != convert.JPEG_SUBSAMPLING)
  output_dir = tmp_path / "out"
  result = subprocess.run([
      sys.executable, "-m", "preprocess.build_shards", f"--input_dir={input_dir}",
      f"--output_dir={output_dir}", f"--jpeg_subsampling={other}", "--runner=DirectRunner"
  ], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  manifest = json.loads((output_dir / "manifest.json").read_text())
  assert manifest["args"]["jpeg_subsampling"] == other
  record = helpers.read_records(output_dir, "validation")[0]
  assert sampling(record["image/encoded"]) == SAMPLING_CODES[other]
  with open(input_dir / record["image/filename"], "rb") as f:
    assert record["image/encoded"] == convert.convert_image(f.read(), subsampling=other).encoded
