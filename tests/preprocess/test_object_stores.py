"""Stage 1 on object stores, against real servers on 127.0.0.1 (`tests/object_stores.py`): every
input form through gs://, the archive form through s3://, a stopped build resumed on gs://, and each
bad input as one line with nothing written. No filesystem is mocked."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from common import manifest as manifest_lib
from preprocess import paths
from preprocess import stores
from preprocess.conversion import resume
from preprocess.job import build
from sample import make_sample_data
from tests import datasets
from tests import helpers
from tests import object_stores
from tests.preprocess import test_archives
from tests.preprocess import test_imagenetv2
from tests.preprocess import test_runners

SHARDS = {"train": 3}
# Google's credential lookup kept on this machine: no key file, no gcloud login, no metadata
# server but a closed local port (google-auth would otherwise ask 169.254.169.254).
_NO_GOOGLE_CREDENTIALS = {
    "HOME": "/nonexistent", "GOOGLE_APPLICATION_CREDENTIALS": "", "CLOUDSDK_CONFIG": "/nonexistent",
    "NO_GCE_CHECK": "True", "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9"
}
# Likewise for boto3: no keys in the environment or in files, no instance metadata.
_NO_AWS_CREDENTIALS = {
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true"
}


@pytest.fixture(scope="module")
def gcs():
  with object_stores.gcs_server() as server:
    server.make_bucket("data")
    yield server


@pytest.fixture(scope="module")
def s3():
  with object_stores.s3_server() as server:
    server.make_bucket("data")
    yield server


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  """A flat-validation tree with broken and stray files, and its build on the local disk."""
  root = tmp_path_factory.mktemp("release")
  info = make_sample_data.make_sample_tree(root / "tree", images_per_class_train=3,
                                           images_per_class_val=1, val_layout="flat")
  helpers.build_dataset(root / "tree", root / "reference", num_shards=SHARDS)
  return root, info


def _env(gcs, without=()):
  env = {k: v for k, v in gcs.env().items() if k not in without and not k.startswith("AWS_")}
  return dict(env, **_NO_GOOGLE_CREDENTIALS, **_NO_AWS_CREDENTIALS)


def _build_in_process(monkeypatch, gcs, input_dir, output_dir, **options):
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
  options.setdefault("progress_seconds", 3600)
  build.run_build(build.BuildOptions(input_dir=input_dir, output_dir=output_dir, **options),
                  PipelineOptions(helpers.IN_PROCESS))


def _comparable(gcs_or_s3, url, local_dir):
  """The dataset at `url`, fetched, as `test_archives.comparable` sees it."""
  return test_archives.comparable(gcs_or_s3.download(url, str(local_dir)))


def _command(*args):
  return test_runners.command(*args) + ["--progress_seconds=0.2"]


def _one_line(result):
  """The one error line of a failed command that printed nothing else of note."""
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr and "Retry" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if re.match(r"^[EF]\d{4} ", line)]
  assert len(errors) == 1, result.stderr[-3000:]
  return errors[0]


@pytest.mark.parametrize(
    "make_form",
    [None, test_archives._ilsvrc2012, test_archives._kaggle, test_archives._kaggle_zip])
def test_every_input_form_through_gcs_gives_the_local_bytes(gcs, release, make_form, tmp_path,
                                                            monkeypatch):
  root, info = release
  form = make_form(root, info, tmp_path / "form") if make_form else root / "tree"
  name = make_form.__name__.strip("_") if make_form else "extracted"
  input_dir = gcs.upload(str(form), f"gs://data/{name}")
  output_dir = f"gs://data/out_{name}"
  _build_in_process(monkeypatch, gcs, input_dir, output_dir, num_shards=SHARDS)
  # The same files as the local build: no temporary, index or probe left behind.
  assert gcs.names(output_dir) == sorted(os.listdir(root / "reference"))
  assert _comparable(gcs, output_dir,
                     tmp_path / "fetched") == test_archives.comparable(root / "reference")


def test_imagenetv2_and_subsets_read_their_flags_files_from_gcs(gcs, release, tmp_path,
                                                                monkeypatch):
  root, info = release
  # ImageNetV2 as a folder and as its tar, in the classes of a training dataset on gs://.
  training = datasets.write_dataset(str(tmp_path / "training"), test_imagenetv2.SYNSETS, {
      "train": [(f"train/{w}/{w}_0.JPEG", label) for label, w in enumerate(test_imagenetv2.SYNSETS)]
  })
  folder = test_imagenetv2.write_v2_folder(str(tmp_path / "v2"))
  os.makedirs(tmp_path / "v2tar")
  with tarfile.open(tmp_path / "v2tar" / "imagenetv2-matched-frequency.tar", "w") as tar:
    tar.add(folder, arcname=test_imagenetv2.FOLDER)
  helpers.build_dataset(folder, tmp_path / "v2_local", classes_from=training)
  gcs.upload(training, "gs://data/training")
  for form in ("v2", "v2tar"):
    gcs.upload(str(tmp_path / form), f"gs://data/{form}")
    _build_in_process(monkeypatch, gcs, f"gs://data/{form}", f"gs://data/out_{form}",
                      classes_from="gs://data/training")
    ours = helpers.output_files(gcs.download(f"gs://data/out_{form}", str(tmp_path / f"o_{form}")))
    theirs = helpers.output_files(tmp_path / "v2_local")
    for files in (ours, theirs):
      files[manifest_lib.MANIFEST_NAME]["splits"]["test"].pop("input")
    assert ours == theirs
  # A subset whose class list and training list are objects in the bucket.
  wnids = sorted(info.classes)[:3]
  (tmp_path / "classes.txt").write_text("".join(f"{w}\n" for w in wnids))
  names = sorted(p.name for p in (root / "tree" / "train" / wnids[0]).iterdir())[:2]
  (tmp_path / "list.txt").write_text("".join(f"{n}\n" for n in names))
  for name in ("classes.txt", "list.txt"):
    gcs.put(f"gs://data/lists/{name}", (tmp_path / name).read_bytes())
  subset = {"per_class": 2, "num_shards": {"train": 1}}
  helpers.build_dataset(root / "tree", tmp_path / "subset_local",
                        classes=str(tmp_path / "classes.txt"),
                        train_list=str(tmp_path / "list.txt"), **subset)
  _build_in_process(monkeypatch, gcs, "gs://data/extracted", "gs://data/out_subset",
                    classes="gs://data/lists/classes.txt", train_list="gs://data/lists/list.txt",
                    **subset)
  ours = test_archives.comparable(gcs.download("gs://data/out_subset", str(tmp_path / "o_sub")))
  theirs = test_archives.comparable(tmp_path / "subset_local")
  for files in (ours, theirs):
    for key in ("name", "train_list"):
      files[manifest_lib.MANIFEST_NAME]["subset"].pop(key)
  assert ours == theirs and ours[manifest_lib.MANIFEST_NAME]["splits"]["train"]["num_examples"] == 2


def test_the_archive_form_through_s3_with_workers_in_their_own_processes(s3, release, tmp_path):
  root, info = release
  form = test_archives._ilsvrc2012(root, info, tmp_path / "form")
  input_dir = s3.upload(form, "s3://data/ilsvrc2012")
  # Keys, endpoint and region only on the command line: the launcher and each worker get them.
  result = subprocess.run(
      _command("--input_dir", input_dir, "--output_dir", "s3://data/out", "--num_shards_train=3",
               "--direct_num_workers=2", *s3.flags()), capture_output=True, text=True, timeout=600,
      env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Finished listing" not in result.stderr and "Connection pool" not in result.stderr
  assert s3.names("s3://data/out") == sorted(os.listdir(root / "reference"))
  assert _comparable(s3, "s3://data/out",
                     tmp_path / "fetched") == test_archives.comparable(root / "reference")


def test_a_stopped_build_on_gcs_resumes_and_never_trusts_a_changed_shard(gcs, release, tmp_path):
  root, _ = release
  # The local input holds a named pipe among the validation images (as tests/preprocess/
  # test_resume.py does): the shard reading it cannot finish until the image is written into it.
  input_dir = tmp_path / "tree"
  shutil.copytree(root / "tree", input_dir)
  pipe = next(p for p in sorted((input_dir / "val").iterdir()) if p.suffix == ".JPEG")
  image = pipe.read_bytes()
  os.remove(pipe)
  os.mkfifo(pipe)
  output_dir = "gs://data/resumed"
  flags = ["--num_shards_train=3", "--num_shards_validation=2", "--direct_num_workers=2"]
  job = subprocess.Popen(_command("--input_dir", input_dir, "--output_dir", output_dir,
                                  *flags), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, env=_env(gcs), start_new_session=True)
  results = f"{output_dir}/{resume.RESULTS_NAME}"
  deadline = time.time() + 240
  while len([n for n in gcs.names(results) if n.endswith(".json")]) < 3:
    assert job.poll() is None, job.stderr.read()[-3000:]
    assert time.time() < deadline, "no shard finished"
    time.sleep(0.2)
  os.killpg(job.pid, signal.SIGKILL)  # the launcher and its workers, as a closed terminal does
  with contextlib.suppress(subprocess.TimeoutExpired):
    job.communicate(timeout=60)
  finished = sorted(n[:-len(".json")] for n in gcs.names(results) if n.endswith(".json"))
  assert 3 <= len(finished) < 5 and manifest_lib.MANIFEST_NAME not in gcs.names(output_dir)
  # A finished shard changed since (same size, other bytes) is converted again, never trusted.
  changed = next(n for n in finished if n.startswith("train-"))
  gcs.put(f"{output_dir}/{changed}", b"x" * len(gcs.get(f"{output_dir}/{changed}")))
  os.remove(pipe)
  pipe.write_bytes(image)
  result = subprocess.run(_command("--input_dir", input_dir, "--output_dir", output_dir, *flags),
                          capture_output=True, text=True, timeout=600, env=_env(gcs))
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resumed: kept {len(finished) - 1} of 5 shards" in result.stderr, result.stderr[-3000:]
  assert "1 shard rebuilt: shard file differs" in result.stderr
  # Google's credentials were looked up once, without Beam's minute of retries.
  assert "Retry with exponential backoff" not in result.stderr
  assert "Unable to find default credentials" not in result.stderr
  helpers.build_dataset(root / "tree", tmp_path / "reference",
                        num_shards={"train": 3, "validation": 2})
  ours = helpers.output_files(gcs.download(output_dir, str(tmp_path / "fetched")))
  theirs = helpers.output_files(tmp_path / "reference")
  assert ours[manifest_lib.MANIFEST_NAME].pop("resume")["kept_shards"] == len(finished) - 1
  theirs[manifest_lib.MANIFEST_NAME].pop("resume")
  assert ours == theirs
  assert gcs.names(output_dir) == sorted(os.listdir(tmp_path / "reference"))


@pytest.mark.parametrize("store, input_dir, output_dir, role, message", [
    ("gcs", "gs://nowhere/imagenet", "gs://data/bad1", None,
     "--input_dir gs://nowhere/imagenet: the bucket nowhere does not exist"),
    ("gcs", "gs://data/extracted", "gs://nowhere/shards", None,
     "--output_dir gs://nowhere/shards: the bucket nowhere does not exist"),
    ("gcs", "gs://data/nothing-here", "gs://data/bad3", None,
     "--input_dir gs://data/nothing-here: holds no files"),
    ("s3", "s3://data/ilsvrc2012", "s3://data/bad4", "nobody",
     "--input_dir s3://data/ilsvrc2012: access denied ("),
    ("s3", "s3://data/ilsvrc2012", "s3://data/bad5", "reader",
     "--output_dir s3://data/bad5/.build_write_check: access denied ("),
    ("s3", "s3://data/ilsvrc2012", "s3://data/bad6", None,
     "s3://data/ilsvrc2012: no AWS credentials were found; give keys allowed to use this bucket "
     "with --s3_access_key_id"),
])
def test_bad_stores_are_one_line_and_write_nothing(gcs, s3, release, store, input_dir, output_dir,
                                                   role, message):
  root, _ = release
  if not gcs.names("gs://data/extracted"):
    gcs.upload(str(root / "tree"), "gs://data/extracted")
  if not s3.names("s3://data/ilsvrc2012"):
    s3.upload(str(root / "tree"), "s3://data/ilsvrc2012")
  server = gcs if store == "gcs" else s3
  flags = s3.flags(role) if store == "s3" else []
  result = subprocess.run(_command("--input_dir", input_dir, "--output_dir", output_dir, *flags),
                          capture_output=True, text=True, timeout=300, env=_env(gcs))
  line = _one_line(result)
  assert message in line, line
  if store == "s3":
    assert "AWS_ACCESS_KEY_ID" in line  # how to give keys
  if role in ("nobody", "reader"):
    assert "AccessDenied" in line, line
  if "nowhere" not in output_dir:
    assert server.names(output_dir) == []


def test_a_filesystem_that_is_not_installed_names_its_extra(gcs, tmp_path):
  # apache-beam[gcp] is a test dependency: its GCS filesystem is hidden as if it were not installed.
  hide = ("import sys; sys.modules['apache_beam.io.gcp.gcsfilesystem'] = None; "
          "from preprocess import build_shards; build_shards.run()")
  result = subprocess.run([
      sys.executable, "-c", hide, "--input_dir=gs://data/extracted",
      f"--output_dir={tmp_path / 'out'}"
  ], capture_output=True, text=True, timeout=300, env=_env(gcs))
  line = _one_line(result)
  assert ("gs://data/extracted: Beam has no filesystem for gs:// installed here; pip install "
          "'alexnet-imagenet[gcp]' (or -r requirements-gcp.txt)") in line, line
  assert not (tmp_path / "out").exists()


def test_store_errors_are_told_apart_by_what_the_user_can_do(gcs, s3, monkeypatch):
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
  stores.connect(None, ["gs://data"])
  with pytest.raises(paths.Missing, match=r"^gs://data/no/such/object: not found \(NotFound"):
    paths.read("gs://data/no/such/object")
  with pytest.raises(paths.Missing):
    paths.list_files("gs://nowhere/prefix")
  assert paths.list_files("gs://data/no/such/prefix") == [] and not paths.exists("gs://data/no")
  s3.client().put_object(Bucket="data", Key="one", Body=b"1")
  for role, error in (("nobody", paths.Denied), ("admin", None)):
    stores.connect(PipelineOptions(s3.flags(role)), ["s3://data"])
    if error:
      with pytest.raises(error, match=r"^s3://data/one: access denied \(AccessDenied"):
        paths.read("s3://data/one")
    else:
      assert paths.read("s3://data/one") == b"1" and paths.read_range("s3://data/one", 0, 9) == b"1"
