"""Writes a small ImageNet-shaped directory tree, for tests and the demo.

Ten real ILSVRC classes, each drawn from one photograph bundled with scikit-image, so that a small
network learns them in minutes on a CPU. Every image is a random augmentation of its class's
photograph, saved at ImageNet-like sizes. The tree also holds the dirty files the real dataset has:
grayscale, CMYK, PNG named .JPEG and gzip-wrapped JPEGs (repairable), and, with --broken_files,
empty, truncated and non-image files named .JPEG (to be skipped) and stray non-image files (to be
ignored).

Usage:
  python -m sample.make_sample_data --output_dir=/tmp/sample [--val_layout=flat]

It lives outside the installed packages (pyproject.toml installs common, preprocess and train)
because it needs scikit-image, a test dependency that cluster workers do not have.
"""

import dataclasses
import gzip
import io
import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageChops
import scipy.io
from skimage import data as skimage_data

from preprocess import errors
from preprocess.conversion import decode

# Devkit ID order: 1-based ILSVRC2012_IDs follow this table, which is deliberately not sorted by
# WNID (nor is the real devkit's), so code that uses the devkit ID as the label gets wrong answers.
# Each row: WNID, words, WordNet gloss, scikit-image photograph, (dark, light) tint for gray ones.
_CLASSES = (
    ("n02389026", "sorrel", "a horse of a brownish orange to light brown color", "horse", None),
    ("n02123045", "tabby, tabby cat", "a cat with a grey or tawny coat mottled with black",
     "chelsea", None),
    ("n09468604", "valley, vale",
     "a long depression in the surface of the land that usually contains a river", "grass",
     ((10, 45, 5), (160, 215, 95))),
    ("n09428293", "seashore, coast, seacoast, sea-coast", "the shore of a sea or ocean", "gravel",
     ((95, 80, 60), (245, 230, 200))),
    ("n07920052", "espresso", "strong black coffee brewed by forcing hot water under pressure "
     "through finely ground coffee beans", "coffee", None),
    ("n03773504", "missile", "a rocket carrying a warhead of conventional or nuclear explosives",
     "rocket", None),
    ("n04548280", "wall clock", "a clock mounted on a wall", "clock", ((35, 30, 80), (210, 215,
                                                                                      255))),
    ("n04350905", "suit, suit of clothes", "a set of garments (usually including a jacket and "
     "trousers or skirt) for outerwear all of the same fabric and color", "astronaut", None),
    ("n04435653", "tile roof", "a roof made of fired clay tiles", "brick", ((60, 20, 10), (235, 125,
                                                                                           80))),
    ("n04069434", "reflex camera", "camera that allows the photographer to view and focus the "
     "exact scene being photographed", "camera", ((10, 10, 10), (240, 240, 240))),
)
# The real meta.mat also lists the inner nodes of the hierarchy, numbered after the leaf classes.
_PARENT = ("n02121808", "domestic cat, house cat, Felis domesticus, Felis catus",
           "any domesticated member of the genus Felis", ("n02123045",))

# How to encode an image so that a correct pipeline applies exactly these fixes, in this order.
_ENCODERS = {
    ():
        lambda image: _encode(image, "JPEG"),
    (decode.GRAYSCALE_TO_RGB,):
        lambda image: _encode(image.convert("L"), "JPEG"),
    (decode.CMYK_TO_RGB,):
        lambda image: _encode(image.convert("CMYK"), "JPEG"),
    (decode.PNG_SOURCE,):
        lambda image: _encode(image, "PNG"),
    # mtime=0 keeps the gzip header, and so the file, independent of the clock.
    (
        decode.GUNZIP,):
        lambda image: gzip.compress(_encode(image, "JPEG"), mtime=0),
    # Four channels, which a decoder must not hand on as they are.
    (decode.PNG_SOURCE, decode.ALPHA_REMOVED):
        lambda image: _encode(image.convert("RGBA"), "PNG"),
}
# The first training image of class k is saved in the k-th of these repairable forms.
_TRAIN_REPAIRS = ((decode.GRAYSCALE_TO_RGB,), (decode.CMYK_TO_RGB,), (decode.PNG_SOURCE,),
                  (decode.GUNZIP,), (decode.GRAYSCALE_TO_RGB,), (decode.PNG_SOURCE,
                                                                 decode.ALPHA_REMOVED))
# The second training image of class k gets the k-th of these unusual sizes (width, height).
_SPECIAL_SIZES = ((1600, 1200), (80, 60), (1600, 120), (60, 80), (1200, 1600))
_TYPICAL_SIZES = ((500, 375), (500, 375), (500, 375), (500, 333), (375, 500), (333, 500),
                  (500, 500), (400, 300), (640, 480), (500, 400))
_JPEG_QUALITY = 90
# Uniform pixel noise in [-_NOISE_AMPLITUDE, _NOISE_AMPLITUDE], made from random bytes.
_NOISE_AMPLITUDE = 6
_NOISE_TABLE = [value % (2 * _NOISE_AMPLITUDE + 1) for value in range(256)] * 3
_HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Photo unavailable</title></head>\n"
              b"<body><p>This photo is no longer available.</p></body></html>\n")
_DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(2038)
_README = b"Images of this class were collected from the web.\n"
_MAT_HEADER_TEXT = 116  # bytes of free text opening a MATLAB 5 file, where scipy puts the date


@dataclasses.dataclass(frozen=True)
class SampleInfo:
  """What `make_sample_tree` wrote. Paths are relative to the output directory, "/"-separated.

  Attributes:
    classes: the leaf WNIDs in sorted order; label i is `classes[i]`.
    class_names: WNID -> words, e.g. "tabby, tabby cat".
    devkit_ids: WNID -> 1-based ILSVRC2012_ID in meta.mat (not sorted-WNID order).
    images: split ("train", "validation", "test") -> ((path, wnid), ...) of every file a correct
      pipeline keeps, repaired ones included; a split without images is absent.
    repaired: path -> the fixes `convert.convert_image` applies to it, in order (`decode.FIXES`).
    broken: path -> the reason (a `errors.REASONS` name) a correct pipeline skips it.
    ignored: non-image files a correct pipeline counts and passes over.
  """
  classes: tuple
  class_names: dict
  devkit_ids: dict
  images: dict
  repaired: dict
  broken: dict
  ignored: tuple


def make_sample_tree(output_dir, *, images_per_class_train=40, images_per_class_val=10,
                     images_per_class_test=0, val_layout="folders", seed=0, broken_files=True):
  """Writes the sample tree; the same arguments always give byte-identical files.

  Args:
    output_dir: directory to write into; it must not exist or be empty.
    images_per_class_train: kept training images per class (>= 1); broken files come on top.
    images_per_class_val: validation images per class (>= 0).
    images_per_class_test: test images per class (>= 0).
    val_layout: "folders" for `val/<wnid>/*.JPEG`, or "flat" for the official flat folder with
      the devkit's ground-truth files and meta.mat; the test split follows the same layout.
    seed: seed of every random choice.
    broken_files: also write unreadable files and stray non-image files.

  Returns:
    A `SampleInfo`.

  Raises:
    ValueError: if `output_dir` is a file or a non-empty directory, or an argument is out of range.
  """
  if images_per_class_train < 1 or images_per_class_val < 0 or images_per_class_test < 0:
    raise ValueError(f"images per class must be >= 1 for train and >= 0 for val and test, got "
                     f"{images_per_class_train}, {images_per_class_val}, {images_per_class_test}")
  if val_layout not in ("folders", "flat"):
    raise ValueError(f"val_layout {val_layout!r}, expected 'folders' or 'flat'")
  if os.path.exists(output_dir) and not (os.path.isdir(output_dir) and not os.listdir(output_dir)):
    raise ValueError(f"{output_dir}: exists and is not an empty directory")
  writer = _Writer(output_dir, np.random.default_rng(seed))
  photos = [_class_photo(source, tint) for _, _, _, source, tint in _CLASSES]
  images = {"train": _write_train_split(writer, photos, images_per_class_train)}
  # The truncated file is half of an image of the class whose folder it is in.
  ignored = _write_broken_files(writer, photos[3], images_per_class_train) if broken_files else ()
  # Validation and test files are named as the real ones are.
  for split, folder, per_class in (("validation", "val", images_per_class_val),
                                   ("test", "test", images_per_class_test)):
    if per_class:
      images[split] = _write_eval_split(writer, photos, split, folder, per_class, val_layout)
  if val_layout == "flat" and (images_per_class_val or images_per_class_test):
    writer.write_bytes("devkit/data/meta.mat", _meta_mat(images_per_class_train))
  classes = tuple(sorted(row[0] for row in _CLASSES))
  class_names = {row[0]: row[1] for row in _CLASSES}
  writer.write_bytes("synset_words.txt",
                     "".join(f"{wnid} {class_names[wnid]}\n" for wnid in classes).encode())
  info = SampleInfo(classes=classes, class_names=class_names,
                    devkit_ids={row[0]: i + 1 for i, row in enumerate(_CLASSES)}, images=images,
                    repaired=writer.repaired, broken=writer.broken, ignored=ignored)
  logging.info("Wrote %s: %s images, %d repaired, %d broken, %d ignored", output_dir,
               {split: len(files) for split, files in images.items()}, len(info.repaired),
               len(info.broken), len(info.ignored))
  return info


class _Writer:
  """Renders class photographs, writes files, and records the repairable and the broken ones."""

  def __init__(self, output_dir, rng):
    self.output_dir = output_dir
    self.rng = rng
    self.repaired = {}
    self.broken = {}

  def write_bytes(self, path, content):
    full_path = os.path.join(self.output_dir, *path.split("/"))
    os.makedirs(os.path.dirname(full_path), exist_ok=True)
    with open(full_path, "wb") as f:
      f.write(content)
    return path

  def render(self, photo, size=None):
    """A random augmentation of `photo` at `size`, or at a random ImageNet-like size."""
    size = size or _TYPICAL_SIZES[self.rng.integers(len(_TYPICAL_SIZES))]
    return _augment(photo, size, self.rng)

  def write_image(self, path, photo, size=None, fixes=()):
    """Writes an augmentation of `photo`: an RGB JPEG, or a dirty file that needs `fixes`."""
    content = _ENCODERS[fixes](self.render(photo, size))
    if fixes:
      self.repaired[path] = fixes
    return self.write_bytes(path, content)


def _write_train_split(writer, photos, per_class):
  """Writes `per_class` images per class: the first dirty, the second at an unusual size.

  Returns:
    ((path, wnid), ...) class by class.
  """
  files = []
  for k, (photo, (wnid, *_)) in enumerate(zip(photos, _CLASSES)):
    for i in range(per_class):
      # With one image per class, that image is both dirty and unusually sized.
      size = _SPECIAL_SIZES[k] if i == min(1, per_class - 1) and k < len(_SPECIAL_SIZES) else None
      fixes = _TRAIN_REPAIRS[k] if i == 0 and k < len(_TRAIN_REPAIRS) else ()
      path = f"train/{wnid}/{wnid}_{i + 1}.JPEG"
      files.append((writer.write_image(path, photo, size, fixes), wnid))
  return tuple(files)


def _write_broken_files(writer, photo, images_per_class_train):
  """Writes four unreadable .JPEG files and two stray non-image files into the class folders.

  Returns:
    The paths of the stray files.
  """
  name = [f"train/{wnid}/{wnid}_{images_per_class_train + 1}.JPEG" for wnid, *_ in _CLASSES]
  jpeg = _encode(writer.render(photo), "JPEG")
  for path, content, reason in ((name[0], b"", errors.EMPTY), (name[1], _HTML_PAGE,
                                                               errors.UNIDENTIFIED),
                                (name[2], writer.rng.bytes(4096), errors.UNIDENTIFIED),
                                (name[3], jpeg[:len(jpeg) // 2], errors.TRUNCATED)):
    writer.broken[writer.write_bytes(path, content)] = reason
  return (writer.write_bytes(f"train/{_CLASSES[4][0]}/README.txt", _README),
          writer.write_bytes(f"train/{_CLASSES[5][0]}/.DS_Store", _DS_STORE))


def _write_eval_split(writer, photos, split, folder, per_class, layout):
  """Writes a validation or test split; the file numbers shuffle the classes, as the real ones do.

  Returns:
    ((path, wnid), ...) in file-number order.
  """
  class_of_number = writer.rng.permutation(np.repeat(np.arange(len(photos)), per_class))
  files, ground_truth = [], []
  for number, k in enumerate(class_of_number, start=1):
    wnid = _CLASSES[k][0]
    name = f"ILSVRC2012_{folder}_{number:08d}.JPEG"
    path = f"{folder}/{name}" if layout == "flat" else f"{folder}/{wnid}/{name}"
    # The real validation set has grayscale photographs too.
    fixes = (decode.GRAYSCALE_TO_RGB,) if split == "validation" and number == 1 else ()
    files.append((writer.write_image(path, photos[k], fixes=fixes), wnid))
    ground_truth.append(f"{k + 1}\n")  # The class's devkit ID: its row in _CLASSES, from 1.
  if layout == "flat":
    writer.write_bytes(f"devkit/data/ILSVRC2012_{split}_ground_truth.txt",
                       "".join(ground_truth).encode())
  return tuple(files)


def _class_photo(source, tint):
  """Loads a scikit-image photograph as RGB, colouring a gray one from `tint`'s dark to light."""
  pixels = getattr(skimage_data, source)()
  if source == "horse":  # A silhouette: paint a chestnut horse against sky and meadow.
    rows = np.linspace(0.0, 1.0, pixels.shape[0])[:, None, None]
    background = (1 - rows) * np.array([150, 190, 235]) + rows * np.array([95, 150, 70])
    pixels = np.where(pixels[..., None], background, np.array([150, 75, 35]))
  elif tint is not None:
    dark, light = np.array(tint, np.float32)
    pixels = dark + pixels[..., None].astype(np.float32) / 255 * (light - dark)
  return Image.fromarray(pixels.astype(np.uint8))


def _augment(photo, size, rng):
  """A random crop, flip, colour and brightness jitter and noise of `photo`, resized to `size`.

  The crop covers 40-100% of the photograph (less where `size` is far narrower or wider than the
  photograph) and its aspect ratio is within 20% of `size`'s, so the resize also stretches a little.
  """
  width, height = size
  photo_width, photo_height = photo.size
  area = rng.uniform(0.4, 1.0) * photo_width * photo_height
  aspect = width / height * np.exp(rng.uniform(-0.2, 0.2))
  crop_width = min(photo_width, photo_height * aspect, np.sqrt(area * aspect))
  crop_height = min(photo_height, crop_width / aspect)  # min() only absorbs rounding
  left = rng.uniform(0, photo_width - crop_width)
  top = rng.uniform(0, photo_height - crop_height)
  image = photo.resize(size, Image.BILINEAR, box=(left, top, left + crop_width, top + crop_height))
  if rng.random() < 0.5:
    image = image.transpose(Image.FLIP_LEFT_RIGHT)
  # Pillow's lookup tables and saturating add do the jitter and the noise at a third of the cost
  # of float arithmetic in numpy, which matters at 500 images a run.
  gain = rng.uniform(0.85, 1.15) * rng.uniform(0.92, 1.08, size=3)
  jitter = np.clip(np.arange(256) * gain[:, None], 0, 255).astype(np.uint8)
  image = image.point(jitter.ravel().tolist())
  noise = Image.frombytes("RGB", size, rng.bytes(width * height * 3)).point(_NOISE_TABLE)
  return ImageChops.add(image, noise, offset=-_NOISE_AMPLITUDE)


def _encode(image, image_format):
  buffer = io.BytesIO()
  image.save(buffer, image_format, **({"quality": _JPEG_QUALITY} if image_format == "JPEG" else {}))
  return buffer.getvalue()


def _meta_mat(images_per_class_train):
  """The devkit's meta.mat: a `synsets` struct array, leaf classes first, as in ILSVRC2012."""
  fields = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
            "num_train_images")
  synsets = np.empty((len(_CLASSES) + 1, 1), dtype=[(field, object) for field in fields])
  no_children = np.zeros((1, 0), np.uint16)
  for i, (wnid, words, gloss, _, _) in enumerate(_CLASSES):
    synsets[i, 0] = (np.uint16(i + 1), wnid, words, gloss, np.uint16(0), no_children, np.uint16(0),
                     np.uint16(images_per_class_train))
  wnid, words, gloss, children = _PARENT
  child_ids = [i + 1 for i, row in enumerate(_CLASSES) if row[0] in children]
  synsets[-1, 0] = (np.uint16(len(_CLASSES) + 1), wnid, words, gloss, np.uint16(len(child_ids)),
                    np.array([child_ids], np.uint16), np.uint16(1), np.uint16(0))
  buffer = io.BytesIO()
  scipy.io.savemat(buffer, {"synsets": synsets})
  # scipy stamps the creation time into the header text; a fixed text keeps the bytes reproducible.
  header = b"MATLAB 5.0 MAT-file, written by sample.make_sample_data"
  return header.ljust(_MAT_HEADER_TEXT) + buffer.getvalue()[_MAT_HEADER_TEXT:]


def _define_flags():
  flags.DEFINE_string("output_dir", None, "Directory to write the sample tree into (new or empty).")
  flags.DEFINE_integer("images_per_class_train", 40, "Training images per class.", lower_bound=1)
  flags.DEFINE_integer("images_per_class_val", 10, "Validation images per class.", lower_bound=0)
  flags.DEFINE_integer("images_per_class_test", 0, "Test images per class.", lower_bound=0)
  flags.DEFINE_enum("val_layout", "folders", ["folders", "flat"],
                    "val/<wnid>/ folders, or the official flat val/ folder plus devkit files.")
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same bytes.",
                       lower_bound=0)
  flags.DEFINE_boolean("broken_files", True, "Also write unreadable and stray non-image files.")
  flags.mark_flag_as_required("output_dir")


def main(argv):
  if len(argv) > 1:
    sys.exit(f"make_sample_data: unexpected arguments {argv[1:]} (write boolean flags as "
             "--broken_files=false)")
  flag_values = flags.FLAGS
  try:
    make_sample_tree(flag_values.output_dir,
                     images_per_class_train=flag_values.images_per_class_train,
                     images_per_class_val=flag_values.images_per_class_val,
                     images_per_class_test=flag_values.images_per_class_test,
                     val_layout=flag_values.val_layout, seed=flag_values.seed,
                     broken_files=flag_values.broken_files)
  except (ValueError, OSError) as e:  # OSError: e.g. no permission to write there
    sys.exit(f"make_sample_data: {e}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
