"""From confirmed pairs to groups of copies, the audit's document, and what `--drop_duplicates=train`
leaves out. Runs in the launcher on the confirmed pairs only (thousands for ImageNet, not 1.28M)."""

from common import audit as audit_lib
from preprocess.audit import fingerprint
from preprocess.audit import search

METHOD = {
    "hash": "pHash: 64 lowest DCT frequencies (DC included) of the stored image's 32x32 luma "
            "block means, one bit each above their median",
    "candidate_bits": fingerprint.CANDIDATE_BITS,
    "confirmation": "correlation of the two 32x32 luma thumbnails' detail (4x4 block means "
                    "removed)",
    "threshold": fingerprint.SIMILAR,
    "digest": "SHA-256 of the stored image's bytes (equal: identical pixels)",
}


def connected(edges):
  """Groups of image ids linked by `edges` ((a, b) pairs), through chains too; each group sorted."""
  parent = {}

  def root(node):
    parent.setdefault(node, node)
    while parent[node] != node:
      parent[node] = parent[parent[node]]
      node = parent[node]
    return node

  for a, b in edges:
    top_a, top_b = root(a), root(b)
    if top_a != top_b:
      parent[max(top_a, top_b)] = min(top_a, top_b)
  groups = {}
  for node in parent:
    groups.setdefault(root(node), []).append(node)
  return [sorted(group) for group in groups.values()]


def document(confirmed):
  """The audit's document (`common.audit`) from the job's output.

  Args:
    confirmed: the confirmation step's elements: (EDGE, a, member a, b, member b) for each pair of
      copies, (NOT_COMPARED, images, False) for each oversized bucket; a member is (split, file,
      class).

  Returns:
    (the document, {image id: member dict} of every image in a group).
  """
  members, edges, not_compared = {}, [], 0
  for element in confirmed:
    if element[0] == "not_compared":
      not_compared += element[1]
      continue
    _, a, member_a, b, member_b = element
    for identifier, (split, file, wnid) in ((a, member_a), (b, member_b)):
      members[identifier] = {"split": split, "file": file, "class": wnid}
    edges.append((a, b))
  groups = [[members[i] for i in group] for group in connected(edges)]
  return audit_lib.make_document(groups, METHOD, not_compared), members


def to_drop(document, members):
  """{image id: dropped entry} of the training copies of validation and test images.

  The validation and test splits stay whole, so scores on them remain the standard ones; a training
  image is left out when its group holds an image of another split (`duplicate_of` names it).
  """
  by_member = {(m["split"], m["file"]): identifier
               for identifier, m in members.items()
               if not search.where(identifier)[0]}
  dropped = {}
  for group in document["groups"]:
    held_out = [m for m in group if m["split"] != "train"]
    if not held_out:
      continue
    for member in group:
      identifier = by_member.get((member["split"], member["file"]))
      if member["split"] == "train" and identifier is not None:
        dropped[identifier] = {
            "split": "train", "path": member["file"], "duplicate_of": held_out[0]["file"]
        }
  return dropped
