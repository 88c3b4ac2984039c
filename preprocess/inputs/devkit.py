"""Reading the ILSVRC devkit's `meta.mat` (ILSVRC-2010 and ILSVRC-2012 have the same structure).

`synsets` is a struct array with fields `ILSVRC<year>_ID` (1-based), `WNID`, `words`, `num_children`,
... The leaf synsets (`num_children == 0`) are the 1000 classes. Their devkit IDs are NOT in sorted
WNID order, so the devkit ID must never be used as a label; it only maps ground-truth lines to WNIDs.
"""

import dataclasses
import io

import scipy.io

from preprocess import paths
from preprocess.inputs.sources import InputError


@dataclasses.dataclass(frozen=True)
class DevkitMeta:
  id_to_wnid: dict  # leaf ILSVRC ID -> WNID
  wnid_to_words: dict  # leaf WNID -> words


def read_meta(path, data=None):
  """Reads the leaf synsets of a devkit `meta.mat`.

  Args:
    path: the meta.mat file (any filesystem Beam knows), or its name in errors if `data` is given.
    data: the file's bytes, when it came out of the devkit archive.

  Returns:
    A `DevkitMeta`.

  Raises:
    InputError: naming the file if it is not a devkit meta.mat.
  """
  try:
    if data is None:
      data = paths.read(path)
    mat = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
  except (OSError, ValueError, TypeError) as e:
    raise InputError(f"{path}: not a readable MATLAB file ({e})") from None
  synsets = mat.get("synsets")
  if synsets is None:
    raise InputError(f"{path}: no 'synsets' struct array; is this the devkit's meta.mat?")
  id_to_wnid, wnid_to_words = {}, {}
  for synset in synsets:
    fields = synset._fieldnames
    id_field = next((name for name in fields if name.startswith("ILSVRC") and name.endswith("_ID")),
                    None)
    if id_field is None or "WNID" not in fields:
      raise InputError(f"{path}: synsets lack ILSVRC<year>_ID/WNID fields (have {fields})")
    if int(getattr(synset, "num_children", 0)) != 0:
      continue
    wnid = str(synset.WNID)
    id_to_wnid[int(getattr(synset, id_field))] = wnid
    wnid_to_words[wnid] = str(getattr(synset, "words", wnid))
  if not id_to_wnid:
    raise InputError(f"{path}: no leaf synsets (num_children == 0)")
  return DevkitMeta(id_to_wnid, wnid_to_words)
