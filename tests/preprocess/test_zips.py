"""The streamed zip directory lists what Python's zipfile lists, in every form zipfile writes."""

import io
import struct
import zipfile

import pytest

from preprocess.inputs import archives
from preprocess.inputs import locations
from preprocess.inputs import kaggle
from preprocess.inputs import zips


def _zipfile_members(path):
  with zipfile.ZipFile(path) as z:
    return [(i.filename, i.header_offset, i.compress_size, i.compress_type, bool(i.flag_bits & 1))
            for i in z.infolist()
            if not i.is_dir()]


def _write(path, members, comment=b"", prefix=b"", force_zip64=False):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as z:
    z.comment = comment
    for name, data, method in members:
      if name.endswith("/"):
        z.mkdir(name)
        continue
      info = zipfile.ZipInfo(name)
      info.compress_type = method
      with z.open(info, "w", force_zip64=force_zip64) as f:
        f.write(data)
  path.write_bytes(prefix + buffer.getvalue())
  return str(path)


_MIXED = [("ILSVRC/", b"", None), ("ILSVRC/Data/CLS-LOC/train/n1/a.JPEG", b"a" * 300, 8),
          ("ILSVRC/Data/CLS-LOC/train/n1/b.JPEG", b"b" * 10, 0),
          ("ILSVRC/Data/CLS-LOC/val/caf\u00e9_\u732b.JPEG", b"c", 8),
          ("LOC_val_solution.csv", b"x", 0)]


@pytest.mark.parametrize("form", ["plain", "comment", "prepended", "zip64_local_sizes"])
def test_members_are_what_zipfile_lists(tmp_path, form):
  path = _write(tmp_path / "a.zip", _MIXED, comment=b"a comment" * (form == "comment"),
                prefix=b"#!/bin/sh\nexit\n" * (form == "prepended"),
                force_zip64=form == "zip64_local_sizes")
  ours = list(zips.members(path))
  assert ours == _zipfile_members(path)
  assert [name for name, *_ in ours][-2] == "ILSVRC/Data/CLS-LOC/val/caf\u00e9_\u732b.JPEG"
  reader = locations.Reader("", (path,))
  assert reader.read("a", (0, ours[0][1], ours[0][2], "zip8")) == b"a" * 300
  reader.close()


def test_past_65535_members_the_zip64_end_record_is_read(tmp_path):
  """Kaggle's zip holds 1.43M members: its counts live in the zip64 end record only."""
  members = [(f"ILSVRC/Data/CLS-LOC/val/{i}.JPEG", b"", 0) for i in range(70_000)]
  path = _write(tmp_path / "big.zip", members)
  with open(path, "rb") as f:
    data = f.read()
  assert b"PK\x06\x06" in data[-200:]  # zipfile wrote the zip64 end record
  ours = list(zips.members(path))
  assert len(ours) == 70_000 and ours == _zipfile_members(path)


def test_sizes_and_offsets_past_4_gib_are_read_from_the_zip64_extra_field(tmp_path):
  """A directory entry says 0xFFFFFFFF where a value needs 64 bits and gives it in its zip64 extra
  field, as in a zip over 4 GiB (built here by hand: the member is small, its fields are not)."""
  name, data = b"ILSVRC/Data/CLS-LOC/val/x.JPEG", b"pixels"
  crc = zipfile.crc32(data)
  local = (struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                       len(name), 20) + name + struct.pack("<2H2Q", 1, 16, len(data), len(data)))
  extra = struct.pack("<2H3Q", 1, 24, len(data), len(data), 0)
  entry = (struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF,
                       0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + name + extra)
  end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(entry), len(local) + len(data), 0)
  path = tmp_path / "zip64.zip"
  path.write_bytes(local + data + entry + end)
  ours = list(zips.members(str(path)))
  assert ours == _zipfile_members(str(path)) == [(name.decode(), 0, len(data), 0, False)]
  reader = locations.Reader("", (str(path),))
  assert reader.read("x", (0, 0, len(data), "zip0")) == data
  reader.close()


def test_a_damaged_directory_is_one_error_naming_the_zip(tmp_path):
  path = _write(tmp_path / "a.zip", _MIXED)
  data = bytearray((tmp_path / "a.zip").read_bytes())
  (tmp_path / "cut.zip").write_bytes(data[:-30])
  with pytest.raises(archives.ArchiveError, match=r"cut.zip: not a readable zip \(no end of "):
    list(zips.members(str(tmp_path / "cut.zip")))
  second_entry = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)
  data[second_entry:second_entry + 4] = b"XXXX"
  (tmp_path / "bad.zip").write_bytes(bytes(data))
  with pytest.raises(
      archives.ArchiveError, match=r"bad.zip: the zip's central directory is "
      rf"damaged at entry 1 \(byte offset {second_entry}\)"):
    list(zips.members(str(tmp_path / "bad.zip")))
  assert len(list(zips.members(path))) == 4


def test_an_encrypted_image_in_kaggles_zip_is_one_error(tmp_path):
  path = _write(tmp_path / "k.zip", _MIXED)
  data = bytearray((tmp_path / "k.zip").read_bytes())
  entry = data.rindex(b"ILSVRC/Data/CLS-LOC/train/n1/a.JPEG") - 46  # its directory entry
  assert data[entry:entry + 4] == b"PK\x01\x02"
  flags = struct.unpack_from("<H", data, entry + 8)[0]
  struct.pack_into("<H", data, entry + 8, flags | 1)
  (tmp_path / "k.zip").write_bytes(bytes(data))
  with pytest.raises(
      archives.ArchiveError, match=r"k.zip: ILSVRC/Data/CLS-LOC/train/n1/a.JPEG is "
      "encrypted; only stored and deflated members are read"):
    kaggle.index_zip(path, write=lambda entries: "unused")


def _index(path, monkeypatch, flush_at=None):
  """Indexes a zip; returns the index, each written file's entries and how many members had been
  read from the directory when it was written."""
  if flush_at:
    monkeypatch.setattr(kaggle, "_FLUSH_AT", flush_at)
  read, written, when = [], [], []
  members = zips.members
  monkeypatch.setattr(zips, "members", lambda p: (read.append(m) or m for m in members(p)))
  index = kaggle.index_zip(
      path, write=lambda entries: written.append(list(entries)) or when.append(len(read)) or len(
          written) - 1)
  return index, written, when


def test_kaggles_zip_is_indexed_a_class_at_a_time(tmp_path, monkeypatch):
  """The launcher writes each class's entries out as the directory moves on, whatever the order."""
  prefix = kaggle.DATA_PREFIX
  grouped = [(f"{prefix}train/n{c}/n{c}_{i}.JPEG", b"x", 0) for c in (1, 2, 3) for i in range(5)]
  grouped += [(f"{prefix}val/v_{i}.JPEG", b"x", 0) for i in range(4)]
  grouped += [(f"{prefix}test/t_1.JPEG", b"x", 0), ("LOC_val_solution.csv", b"ImageId\n", 8)]
  index, written, when = _index(_write(tmp_path / "grouped.zip", grouped), monkeypatch, flush_at=5)
  assert [len(entries) for entries in written] == [5, 5, 5, 4]  # one file per class, then val
  assert when[:2] == [6, 11]  # each class written as soon as the next one starts
  assert index.index_files == {("train", "n1"): [0], ("train", "n2"): [1], ("train", "n3"): [2],
                               ("validation", None): [3]}
  assert index.has_test and index.label_files == {"LOC_val_solution.csv": "ImageId\n"}
  interleaved = [grouped[c * 5 + i] for i in range(5) for c in range(3)] + grouped[15:]
  index, mixed, _ = _index(_write(tmp_path / "mixed.zip", interleaved), monkeypatch)
  assert sorted(e[1] for entries in mixed for e in entries) == sorted(
      e[1] for entries in written for e in entries)
  assert sorted(index.index_files) == [("train", "n1"), ("train", "n2"), ("train", "n3"),
                                       ("validation", None)]
