"""Opens train.report's page in headless Chromium (Debian's `chromium`) from a file:// URL.

Checks that every section's heading is in the DOM, every image decodes, the screenshot is not blank
and the browser logged no console message (the page has no script, so any message is an error).
"""

import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from common import dataset as dataset_lib
from train.report import page as page_lib

CHROMIUM = shutil.which("chromium")
HEADINGS = ("Run summary", "Learning curves", "Final metrics", "Per-class accuracy", "Confusions",
            "Predictions", "Figure 3: first-layer kernels",
            "Figure 4 (right): nearest training images in fc7 space")
# Appended to a copy of the page only: after every image has loaded or failed, the body records
# how many did not decode, which --dump-dom then shows.
IMAGE_PROBE = ("<script>window.addEventListener('load', () => {document.body.dataset.broken = "
               "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
               ".length; document.body.dataset.images = document.images.length;});</script>")


@pytest.fixture(scope="module", autouse=True)
def chromium():
  """Skips where Chromium is absent, in one line, except on CI, which installs it (.ci/run)."""
  if CHROMIUM is None:
    message = "chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI"):
      pytest.fail(f"{message}; .ci/run should have installed it")
    pytest.skip(message)


def _chromium(tmp_path, url, *mode):
  """Runs headless Chromium on `url`; returns (stdout, console lines from its log)."""
  profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
  result = subprocess.run([
      CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
      f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *mode, url
  ], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout, [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def page(trained_dir, dataset_dir, tmp_path_factory):
  model_dir = shutil.copytree(trained_dir, str(tmp_path_factory.mktemp("browser") / "model"))
  context = page_lib.build_context(dataset_lib.load(dataset_dir), model_dir, "validation",
                                   batch_size=4, neighbour_pool=8, num_queries=2, num_neighbours=3,
                                   num_predictions=4, num_confusions=3)
  path = os.path.join(model_dir, "report.html")
  page_lib.write_page(page_lib.render(context), path)
  return path


def test_every_section_renders_in_chromium(page, tmp_path):
  dom, console = _chromium(tmp_path, f"file://{page}", "--dump-dom")
  assert console == []
  for heading in HEADINGS:
    assert re.search(rf"<h2[^>]*>{re.escape(heading)}</h2>", dom), heading
  # Every image is an inline data URI that decodes (none would load from a file:// page otherwise).
  sources = re.findall(r'<img [^>]*src="([^"]+)"', dom)
  assert len(sources) > 10
  for source in sources:
    assert source.startswith("data:image/"), source[:40]
    Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).load()


def test_no_broken_images_in_chromium(page, tmp_path):
  probed = tmp_path / "probed.html"
  probed.write_text(
      open(page, encoding="utf-8").read().replace("</body>", IMAGE_PROBE + "</body>"),
      encoding="utf-8")
  dom, console = _chromium(tmp_path, probed.as_uri(), "--dump-dom")
  assert console == []
  images = int(re.search(r'data-images="(\d+)"', dom).group(1))
  assert images > 10
  assert re.search(r'data-broken="(\d+)"', dom).group(1) == "0"


def test_screenshot_is_not_blank(page, tmp_path):
  shot = tmp_path / "shot.png"
  _, console = _chromium(tmp_path, f"file://{page}", f"--screenshot={shot}",
                         "--window-size=1280,3000")
  assert console == []
  pixels = np.asarray(Image.open(shot).convert("RGB"), np.float32)
  assert pixels.std() > 20  # text, plots and thumbnails, not one flat colour
  assert (pixels.sum(axis=2) < 200).mean() > 0.005  # some dark ink: text was drawn
