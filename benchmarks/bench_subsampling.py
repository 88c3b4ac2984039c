"""Stored-pixel fidelity, bytes and conversion time of each JPEG chroma subsampling.

  python -m benchmarks.bench_subsampling [--repeats 20]

For scikit-image's colour photographs and the saturated fine-detail cases made from them (see
tests/preprocess/colour_photos.py), each saved as a quality-95 JPEG at 4:4:4 and at 4:2:0 source
subsampling, prints per stored subsampling: mean bytes of the stored JPEG, worst and mean PSNR
against the full-resolution reference, for the photographs and the fine-detail cases apart; then
the time of `convert.convert_image` per image, which is stage 1's cost of each subsampling.
"""

import collections
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging

from preprocess.conversion import convert
from tests.preprocess import colour_photos

FLAGS = flags.FLAGS


def fidelity(sources):
  """{(group, source subsampling, stored subsampling): [(name, bytes, PSNR)]}."""
  fine_detail = set(colour_photos.fine_detail_cases())
  results = collections.defaultdict(list)
  for source_subsampling, by_name in sources.items():
    for name, data in by_name.items():
      ref = colour_photos.reference(data)
      group = "fine detail" if name in fine_detail else "photographs"
      for subsampling in convert.JPEG_SUBSAMPLINGS:
        image = convert.convert_image(data, subsampling=subsampling)
        results[group, source_subsampling, subsampling].append(
            (name, len(image.encoded), colour_photos.psnr(image.pixels, ref)))
  return results


def conversion_seconds(sources, repeats):
  """{(source subsampling, stored subsampling): median over `repeats` of the mean per image}.

  The subsamplings alternate image by image, so a shared machine's drift falls on both alike.
  """
  totals = collections.defaultdict(list)
  for _ in range(repeats):
    elapsed = collections.Counter()
    for source_subsampling, by_name in sources.items():
      for data in by_name.values():
        for subsampling in convert.JPEG_SUBSAMPLINGS:
          start = time.perf_counter()
          convert.convert_image(data, subsampling=subsampling)
          elapsed[source_subsampling, subsampling] += time.perf_counter() - start
    for key, seconds in elapsed.items():
      totals[key].append(seconds / len(sources[key[0]]))
  return {key: float(np.median(values)) for key, values in totals.items()}


def main(argv):
  del argv
  cases = colour_photos.all_cases()
  sources = {
      s: {name: colour_photos.source_jpeg(pixels, s) for name, pixels in cases.items()}
      for s in convert.JPEG_SUBSAMPLINGS
  }
  results = fidelity(sources)
  for (group, source_subsampling, subsampling), rows in sorted(results.items()):
    for name, size, quality in rows:
      logging.info("%-32s source %s, stored %s: %5.1f dB %5.1f KB", name, source_subsampling,
                   subsampling, quality, size / 1000)
  logging.info("| images | source | stored | mean bytes | PSNR, worst | PSNR, mean |")
  logging.info("| --- | --- | --- | --- | --- | --- |")
  for (group, source_subsampling, subsampling), rows in sorted(results.items()):
    _, sizes, psnrs = zip(*rows)
    worst = min(rows, key=lambda row: row[2])
    logging.info("| %s (%d) | %s | %s | %.1f KB | %.1f dB (%s) | %.1f dB |", group, len(rows),
                 source_subsampling, subsampling,
                 np.mean(sizes) / 1000, worst[2], worst[0], np.mean(psnrs))
  for (source_subsampling,
       subsampling), seconds in sorted(conversion_seconds(sources, FLAGS.repeats).items()):
    logging.info(
        "convert_image, source %s, stored %s: %.2f ms per image (median of %d passes "
        "over the %d images)", source_subsampling, subsampling, 1000 * seconds, FLAGS.repeats,
        len(cases))


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_integer("repeats", 20, "Timed conversions of each image per subsampling.",
                       lower_bound=1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
