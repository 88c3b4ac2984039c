"""ImageNet as downloaded: every form gives the same bytes as the extracted tree; damage is named."""

import gzip
import io
import logging
import os
import re
import shutil
import struct
import subprocess
import tarfile
import zipfile

import pytest

from preprocess.inputs import archives
from preprocess.inputs import indexing
from preprocess.job import build
from sample import make_sample_data
from preprocess.inputs import sources
from tests import helpers
from tests.preprocess import archive_fixtures

SHARDS = {"train": 3}


def comparable(dataset_dir):
  """Every output file; the manifest without the run options and the input forms."""
  files = helpers.output_files(dataset_dir)
  for split in files["manifest.json"]["splits"].values():
    split.pop("input")
  return files


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  """A flat-validation tree with broken and stray files, and its extracted build."""
  root = tmp_path_factory.mktemp("release")
  info = make_sample_data.make_sample_tree(root / "tree", images_per_class_train=4,
                                           images_per_class_val=2, val_layout="flat")
  helpers.build_dataset(root / "tree", root / "reference", num_shards=SHARDS)
  return root, info


def _ilsvrc2012(root, info, out):
  return archive_fixtures.ilsvrc2012(root / "tree", str(out))


def _kaggle(root, info, out):
  class_of = {p.split("/")[-1]: w for p, w in info.images["validation"]}
  return archive_fixtures.kaggle_tree(root / "tree", str(out), class_of)


def _kaggle_zip(root, info, out):
  os.makedirs(out)
  archive_fixtures.kaggle_zip(_kaggle(root, info, out.parent / "extracted"),
                              str(out / "imagenet-object-localization-challenge.zip"))
  return str(out)


def _kaggle_zip_stored(root, info, out):
  os.makedirs(out)
  archive_fixtures.kaggle_zip(_kaggle(root, info, out.parent / "extracted"),
                              str(out / "imagenet.zip"), zipfile.ZIP_STORED)
  return str(out)


def _mixed(root, info, out):
  """Extracted training folders, the validation split as its archive, the devkit archived."""
  shutil.copytree(root / "tree" / "train", out / "train")
  archive_fixtures.pack_flat_tar(root / "tree", "val", str(out / "ILSVRC2012_img_val.tar"))
  archive_fixtures.pack_devkit(root / "tree", str(out / "devkit.tar.gz"), "ILSVRC2012_devkit_t12")
  shutil.copy(root / "tree" / "synset_words.txt", out)
  return str(out)


@pytest.mark.parametrize("make_form, inputs", [(_ilsvrc2012, ("tar", "tar")),
                                               (_kaggle, ("kaggle", "kaggle")),
                                               (_kaggle_zip, ("zip", "zip")),
                                               (_kaggle_zip_stored, ("zip", "zip")),
                                               (_mixed, ("extracted", "tar"))])
def test_every_form_gives_the_extracted_trees_bytes(release, make_form, inputs, tmp_path):
  root, info = release
  form = make_form(root, info, tmp_path / "form")
  manifest = helpers.build_dataset(form, tmp_path / "out", num_shards=SHARDS)
  assert comparable(tmp_path / "out") == comparable(root / "reference")
  assert tuple(manifest["splits"][split]["input"].split(" ")[0]
               for split in ("train", "validation")) == inputs


def _gnu_tar(fmt, folder, path, names=None):
  """`tar` itself packing a folder (`./` names and a directory entry), or the given names in it."""
  subprocess.run(["tar", f"--format={fmt}", "-cf",
                  str(path), "-C",
                  str(folder), *(names or ["."])], check=True)


@pytest.mark.parametrize("fmt", ["gnu", "posix", "v7"])
def test_archives_packed_by_gnu_tar_give_the_extracted_trees_bytes(release, fmt, tmp_path, caplog):
  """Real downloads are packed by `tar`, not Python: GNU headers, pax headers for every member, or
  the old v7 format without a magic; with `./` names and directory entries (`tar -C dir .`)."""
  root, _ = release
  tree, form, classes = root / "tree", tmp_path / "form", tmp_path / "classes"
  os.makedirs(form)
  os.makedirs(classes)
  for wnid in sorted(os.listdir(tree / "train")):
    _gnu_tar(fmt, tree / "train" / wnid, classes / f"{wnid}.tar")
  _gnu_tar(fmt, classes, form / "ILSVRC2012_img_train.tar", sorted(os.listdir(classes)))
  _gnu_tar(fmt, tree / "val", form / "ILSVRC2012_img_val.tar")
  archive_fixtures.pack_devkit(tree, str(form / "ILSVRC2012_devkit_t12.tar.gz"),
                               "ILSVRC2012_devkit_t12")
  with caplog.at_level(logging.INFO, logger="absl"):
    manifest = helpers.build_dataset(form, tmp_path / "out", num_shards=SHARDS)
  assert comparable(tmp_path / "out") == comparable(root / "reference")
  assert manifest["splits"]["train"]["input"].startswith("tar ")
  assert re.search(r"indexed 10 archive units of \S+ in [\d.]+ s \(by the launcher\)", caplog.text)


def test_only_small_local_archives_are_indexed_by_the_launcher():
  small, limit = ("/data/train.tar", 0, 1000, "train/n1"), indexing.LAUNCHER_MAX_BYTES
  assert indexing.in_launcher([small, small])
  assert not indexing.in_launcher([small, ("/data/train.tar", 1000, 1000 + limit, "train/n2")])
  # Every header read from object storage is a request: those are always read in parallel.
  assert not indexing.in_launcher([("gs://bucket/train.tar", 0, 1000, "train/n1")])


def test_ilsvrc2010_shapes_with_the_published_test_labels(tmp_path):
  tree = tmp_path / "tree"
  make_sample_data.make_sample_tree(tree, images_per_class_train=2, images_per_class_val=1,
                                    images_per_class_test=2, val_layout="flat", broken_files=False)
  helpers.build_dataset(tree, tmp_path / "reference", num_shards=SHARDS)
  form = archive_fixtures.ilsvrc2010(tree, str(tmp_path / "ilsvrc2010"))
  manifest = helpers.build_dataset(form, tmp_path / "out", num_shards=SHARDS)
  assert manifest["splits"]["test"]["input"] == f"tar {form}/ILSVRC2010_images_test.tar"
  assert comparable(tmp_path / "out") == comparable(tmp_path / "reference")


@pytest.mark.parametrize("make_form", [_kaggle, _kaggle_zip])
def test_kaggle_test_folder_is_ignored_and_said(release, make_form, tmp_path, caplog):
  root, info = release
  form = make_form(root, info, tmp_path / "form")
  with caplog.at_level(logging.INFO, logger="absl"):
    manifest = helpers.build_dataset(form, tmp_path / "out", num_shards=SHARDS)
  assert "test" not in manifest["splits"]
  assert re.search(r"ILSVRC/Data/CLS-LOC/test/ (in \S+ )?was ignored: it has no labels",
                   caplog.text)


def _train_tar(tmp_path, release):
  root, _ = release
  out = tmp_path / "in"
  os.makedirs(out)
  shutil.copytree(root / "tree" / "devkit", out / "devkit")
  shutil.copy(root / "tree" / "synset_words.txt", out)
  archive_fixtures.pack_train_tar(root / "tree", str(out / "train.tar"))
  archive_fixtures.pack_flat_tar(root / "tree", "val", str(out / "val_images.tar"))
  return out, out / "train.tar"


def test_truncated_member_is_skipped_with_its_path(release, tmp_path):
  out, path = _train_tar(tmp_path, release)
  size = archives.file_size(str(path))
  with open(path, "rb") as f:
    members = list(archives.tar_members(f, str(path), 0, size))
  # Cut the archive in the middle of the last class tar's last member.
  wnid = members[-1][0][:-4]
  with open(path, "rb") as f:
    inner = list(archives.tar_members(f, str(path), members[-1][1],
                                      members[-1][1] + members[-1][2]))
  name, offset, length, _ = inner[-1]
  with open(path, "r+b") as f:
    f.truncate(offset + length // 2)
  manifest = helpers.build_dataset(out, tmp_path / "out", num_shards=SHARDS)
  skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
  assert skipped[f"train/{wnid}/{name}"] == "truncated"


def test_truncated_validation_archive_keeps_the_labels_of_what_is_left(release, tmp_path):
  root, info = release
  out, _ = _train_tar(tmp_path, release)
  path = out / "val_images.tar"
  with open(path, "rb") as f:
    members = list(archives.tar_members(f, str(path), 0, archives.file_size(str(path))))
  name, offset, length, _ = members[-3]
  with open(path, "r+b") as f:
    f.truncate(offset + length - 1)
  manifest = helpers.build_dataset(out, tmp_path / "out", num_shards=SHARDS)
  assert {s["path"]: s["reason"] for s in manifest["skipped"] if s["split"] == "validation"
         } == {f"val/{name}": "truncated"}
  records = helpers.read_records(tmp_path / "out", "validation")
  expected = dict(info.images["validation"][:-3])
  assert {r["image/filename"]: r["image/class/synset"] for r in records} == expected


def test_header_with_a_bad_checksum_stops_naming_archive_and_offset(release, tmp_path):
  out, path = _train_tar(tmp_path, release)
  with open(path, "rb") as f:
    _, start, length, _ = list(archives.tar_members(f, str(path), 0,
                                                    archives.file_size(str(path))))[1]
    inner = list(archives.tar_members(f, str(path), start, start + length))
  header = inner[1][1] - archives.BLOCK  # the second member of the second class tar
  with open(path, "r+b") as f:
    f.seek(header + 10)
    f.write(b"X")
  with pytest.raises(
      sources.InputError, match=rf"train.tar: the tar header at byte offset "
      rf"{header} fails its checksum"):
    helpers.build_dataset(out, tmp_path / "out", num_shards=SHARDS)
  assert not (tmp_path / "out" / "manifest.json").exists()


def test_compressed_image_archive_is_refused_in_one_line(release, tmp_path):
  out, path = _train_tar(tmp_path, release)
  with open(path, "rb") as f, gzip.open(out / "train.tar.gz", "wb") as g:
    g.write(f.read())
  os.remove(path)
  with pytest.raises(
      sources.InputError, match=r"train.tar.gz: a compressed image archive cannot "
      "be read by byte ranges; decompress it"):
    build.plan_input(build.BuildOptions(str(out), "unused"))


def test_tar_parser_reads_long_names_and_base256_sizes():
  long_name = "n01440764/" + "x" * 120 + ".JPEG"
  for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
      info = tarfile.TarInfo(long_name)
      info.size = 5
      tar.addfile(info, io.BytesIO(b"hello"))
    data = buffer.getvalue()
    (name, offset, size, truncated), = archives.tar_members(io.BytesIO(data), "t", 0, len(data))
    assert (name, data[offset:offset + size], truncated) == (long_name, b"hello", False)
  assert archives._number(b"\x80" + struct.pack(">Q", 9 * 2**30).rjust(11, b"\0")) == 9 * 2**30


def test_tar_headers_summed_as_signed_or_unsigned_bytes_are_both_accepted():
  """Old tar writers summed the header as signed bytes; a name with non-ASCII bytes tells them
  apart. Python's tarfile reads both, and so must the index."""
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    info = tarfile.TarInfo("val/caf\u00e9_val_1.JPEG")
    info.size = 5
    tar.addfile(info, io.BytesIO(b"hello"))
  unsigned = bytearray(buffer.getvalue())
  header = unsigned[:archives.BLOCK]
  high_bytes = sum(b >= 128 for b in header[:148] + header[156:])
  assert high_bytes == 2  # the two bytes of "é"
  signed = bytearray(unsigned)
  total = int(header[148:154], 8) - 256 * high_bytes
  signed[148:156] = b"%06o\0 " % total
  assert tarfile.open(fileobj=io.BytesIO(bytes(signed))).getnames() == [info.name]
  for data in (bytes(unsigned), bytes(signed)):
    (name, offset, size, _), = archives.tar_members(io.BytesIO(data), "t", 0, len(data))
    assert (name, data[offset:offset + size]) == (info.name, b"hello")
  signed[148:156] = b"%06o\0 " % (total - 1)
  with pytest.raises(archives.ArchiveError, match="byte offset 0 fails its checksum"):
    list(archives.tar_members(io.BytesIO(bytes(signed)), "t", 0, len(signed)))


def _tar_with_links(long_names, link_to="val/a_val_1.JPEG"):
  """A tar holding one image, a hard link and a symlink to it (GNU tar's way of storing a second
  name of the same file), with names over 100 bytes when `long_names`."""
  pad = "x" * 110 if long_names else ""
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
    info = tarfile.TarInfo(f"val/a_val_1{pad}.JPEG")
    info.size = 5
    tar.addfile(info, io.BytesIO(b"hello"))
    for kind, name, target in ((tarfile.LNKTYPE, f"val/b_val_2{pad}.JPEG", link_to + pad),
                               (tarfile.SYMTYPE, f"val/c_val_3{pad}.JPEG", f"a_val_1{pad}.JPEG")):
      link = tarfile.TarInfo(name)
      link.type, link.linkname = kind, target.replace(".JPEG" + pad, pad + ".JPEG")
      tar.addfile(link)
  return buffer.getvalue()


@pytest.mark.parametrize("long_names", [False, True])
def test_links_in_a_tar_are_read_as_the_file_they_name(long_names):
  data = _tar_with_links(long_names)
  members = list(archives.tar_members(io.BytesIO(data), "t", 0, len(data)))
  assert [name.split("_val_")[0] for name, _, _, _ in members] == ["val/a", "val/b", "val/c"]
  assert {data[offset:offset + size] for _, offset, size, _ in members} == {b"hello"}


def test_a_link_to_a_file_not_stored_before_it_is_one_error():
  data = _tar_with_links(False, link_to="val/missing.JPEG")
  with pytest.raises(archives.ArchiveError, match=r"t: val/b_val_2.JPEG .*link to val/missing"):
    list(archives.tar_members(io.BytesIO(data), "t", 0, len(data)))


def test_flags_name_archives_anywhere_and_indexing_reports_progress(release, tmp_path, caplog,
                                                                    monkeypatch):
  """Indexed by the job, as archives too large for the launcher are (the other tests' archives are
  small enough for the launcher): the same bytes, and progress while it runs."""
  monkeypatch.setattr(indexing, "LAUNCHER_MAX_BYTES", 0)
  root, _ = release
  elsewhere = tmp_path / "downloads"
  os.makedirs(elsewhere)
  archive_fixtures.pack_flat_tar(root / "tree", "val", str(elsewhere / "v.tar"))
  archive_fixtures.pack_devkit(root / "tree", str(elsewhere / "d.tgz"), "ILSVRC2012_devkit_t12")
  form = tmp_path / "form"
  os.makedirs(form)
  archive_fixtures.pack_train_tar(root / "tree", str(form / "t.tar"))
  shutil.copy(root / "tree" / "synset_words.txt", form)
  with caplog.at_level(logging.INFO, logger="absl"):
    manifest = helpers.build_dataset(form, tmp_path / "out", num_shards=SHARDS,
                                     progress_seconds=0.001,
                                     archives={"validation": str(elsewhere / "v.tar")},
                                     devkit_archive=str(elsewhere / "d.tgz"))
  assert manifest["splits"]["validation"]["input"] == f"tar {elsewhere}/v.tar"
  assert comparable(tmp_path / "out") == comparable(root / "reference")
  assert re.search(r"indexing archives: \d+/10 units done", caplog.text)
  assert re.search(r"indexing archives: \d+/1 units done", caplog.text)  # the validation tar's job
  # Each job counts only its own units, not those of the jobs before it (which printed "11/1").
  done = re.findall(r"indexing archives: (\d+)/(\d+) units done", caplog.text)
  assert all(int(units) <= int(total) for units, total in done), done
  assert "indexed 10 archive units of " in caplog.text and "(by the workers)" in caplog.text
  with pytest.raises(sources.InputError, match="--test_archive .*missing.tar: not found"):
    build.plan_input(
        build.BuildOptions(str(form), "unused", archives={"test": str(tmp_path / "missing.tar")}))
