"""A build stopped at any point keeps its finished shards, and the rerun converts only the others.

Each stop is made deterministic by a named pipe among the validation images: the worker that reads
it blocks until the test writes the image into it, so at least one shard can never finish before
the stop while the others do. For the rerun the pipe is replaced by the image itself, and the
result is compared with an uninterrupted build of that final input.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import psutil
import pytest

from common import manifest as manifest_lib
from preprocess.conversion import resume
from sample import make_sample_data
from tests import helpers
from tests.preprocess import archive_fixtures
from tests.preprocess import test_archives
from tests.preprocess import test_runners

SHARDS = {"train": 6, "validation": 2}
FLAGS = [
    "--num_shards_train=6", "--num_shards_validation=2", "--direct_num_workers=2",
    "--progress_seconds=0.2"
]
_PIPE = "val/n02123045/ILSVRC2012_val_00099999.JPEG"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  """(the input with the pipe's image in place, an uninterrupted build of it, the image's bytes)."""
  root = tmp_path_factory.mktemp("resume")
  make_sample_data.make_sample_tree(root / "tree", images_per_class_train=8, images_per_class_val=2,
                                    broken_files=False)
  image = sorted((root / "tree" / "val" / "n02123045").iterdir())[0].read_bytes()
  (root / "tree" / _PIPE).write_bytes(image)
  helpers.build_dataset(root / "tree", root / "reference", num_shards=SHARDS)
  return root / "tree", root / "reference", image


def _input_with_pipe(tree, target, train_tar=False):
  """A copy of the tree whose pipe image is a named pipe; training as the release's tar if asked."""
  if train_tar:
    target.mkdir()
    shutil.copytree(tree / "val", target / "val")
    shutil.copy(tree / "synset_words.txt", target)
    archive_fixtures.pack_train_tar(tree, str(target / "ILSVRC2012_img_train.tar"))
  else:
    shutil.copytree(tree, target)
  os.remove(target / _PIPE)
  os.mkfifo(target / _PIPE)
  return target


def _results(output_dir):
  folder = output_dir / resume.RESULTS_NAME
  return sorted(p.name[:-len(".json")] for p in folder.glob("*.json")) if folder.exists() else []


def _start(input_dir, output_dir, *extra):
  return subprocess.Popen(
      test_runners.command("--input_dir", input_dir, "--output_dir", output_dir, *FLAGS, *extra),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_a_finished_shard(job, output_dir):
  deadline = time.time() + 240
  while not _results(output_dir):
    assert job.poll() is None, job.stderr.read()[-3000:]
    assert time.time() < deadline, "no shard finished"
    time.sleep(0.05)
  time.sleep(0.5)  # let the shards in flight on the other worker finish too


def _workers(job):
  return [
      p for p in psutil.Process(job.pid).children(recursive=True)
      if "sdk_worker_main" in " ".join(p.cmdline()) and p.name().startswith("python")
  ]


def _stop(job, how):
  """Stops the job as a user or the kernel would; returns (exit code, stderr)."""
  if how == "kill -9 the launcher":
    os.killpg(job.pid, signal.SIGKILL)  # the workers go with it, as with a closed terminal
  elif how == "kill -9 a worker":
    _workers(job)[0].kill()
  else:  # Ctrl-C: the terminal sends SIGINT to the whole foreground process group
    os.killpg(job.pid, signal.SIGINT)
  try:
    _, stderr = job.communicate(timeout=120)
  finally:
    with contextlib.suppress(ProcessLookupError):
      os.killpg(job.pid, signal.SIGKILL)
  return job.returncode, stderr


def _one_error_line(stderr):
  assert "Traceback" not in stderr and "Killed" not in stderr, stderr[-3000:]
  assert "harness failed" not in stderr and "Logging client failed" not in stderr, stderr[-3000:]
  errors = [line for line in stderr.splitlines() if re.match(r"^[EF]\d{4} ", line)]
  assert len(errors) == 1, stderr[-3000:]
  return errors[0]


def _stamps(output_dir, files):
  return {f: (os.stat(output_dir / f).st_ino, os.stat(output_dir / f).st_mtime_ns) for f in files}


def _rerun_and_compare(tree, reference, input_dir, output_dir, finished,
                       compare=helpers.output_files):
  """Puts the image in place of the pipe, reruns the same command, checks what it kept."""
  os.remove(input_dir / _PIPE)
  shutil.copy(tree / _PIPE, input_dir / _PIPE)
  stamps = _stamps(output_dir, finished)
  result = test_runners.run("--input_dir", input_dir, "--output_dir", output_dir, *FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  total = sum(SHARDS.values())
  assert f"resumed: kept {len(finished)} of {total} shards" in result.stderr, result.stderr[-3000:]
  progress = re.findall(r"progress: \d+/(\d+) shards", result.stderr)
  assert progress and {int(n) for n in progress} == {total - len(finished)}
  assert _stamps(output_dir, finished) == stamps  # kept as they were, not written again
  ours, theirs = compare(output_dir), compare(reference)
  assert ours[manifest_lib.MANIFEST_NAME].pop("resume")["kept_shards"] == len(finished)
  theirs[manifest_lib.MANIFEST_NAME].pop("resume")
  assert ours == theirs
  assert not (output_dir / resume.RESULTS_NAME).exists()
  return result


@pytest.mark.parametrize("how", ["kill -9 the launcher", "kill -9 a worker", "Ctrl-C"])
def test_a_stopped_build_resumes_where_it_stopped(tree, tmp_path, how):
  tree, reference, _ = tree
  input_dir = _input_with_pipe(tree, tmp_path / "imagenet")
  output_dir = tmp_path / "shards"
  job = _start(input_dir, output_dir)
  _wait_for_a_finished_shard(job, output_dir)
  code, stderr = _stop(job, how)
  finished = _results(output_dir)
  assert finished and len(finished) < sum(SHARDS.values())
  if how == "kill -9 a worker":
    assert code == 1
    line = _one_error_line(stderr)
    assert "a worker process of the job died, killed by SIGKILL" in line
    assert "out-of-memory killer" in line and "rerun the same command to resume" in line
    assert f"{len(finished)} of {sum(SHARDS.values())} shards are complete and kept" in line, line
  elif how == "Ctrl-C":
    assert code == 130
    line = _one_error_line(stderr)
    assert (f"stopped by Ctrl-C: {len(finished)} of {sum(SHARDS.values())} shards are complete and "
            f"kept in {output_dir}; rerun the same command to resume") in line, line
  _rerun_and_compare(tree, reference, input_dir, output_dir, finished)


def test_the_archive_form_resumes_too(tree, tmp_path):
  tree, reference, _ = tree
  input_dir = _input_with_pipe(tree, tmp_path / "imagenet", train_tar=True)
  output_dir = tmp_path / "shards"
  job = _start(input_dir, output_dir)
  _wait_for_a_finished_shard(job, output_dir)
  _stop(job, "kill -9 the launcher")
  finished = _results(output_dir)
  assert any(name.startswith("train-") for name in finished)
  _rerun_and_compare(tree, reference, input_dir, output_dir, finished,
                     compare=test_archives.comparable)


def test_other_options_rebuild_and_overwrite_starts_from_nothing(tree, tmp_path):
  tree, _, _ = tree
  input_dir = _input_with_pipe(tree, tmp_path / "imagenet")
  output_dir = tmp_path / "shards"
  job = _start(input_dir, output_dir)
  _wait_for_a_finished_shard(job, output_dir)
  _stop(job, "kill -9 the launcher")
  finished = _results(output_dir)
  os.remove(input_dir / _PIPE)
  shutil.copy(tree / _PIPE, input_dir / _PIPE)
  result = test_runners.run("--input_dir", input_dir, "--output_dir", output_dir, *FLAGS,
                            "--quality=90")
  assert result.returncode == 0, result.stderr[-3000:]
  count = len(finished)
  assert f"{count} shard{'s' if count > 1 else ''} rebuilt: options differ" in result.stderr
  assert "resumed:" not in result.stderr
  # A complete dataset is never resumed into: --overwrite replaces it from nothing.
  result = test_runners.run("--input_dir", input_dir, "--output_dir", output_dir, *FLAGS,
                            "--overwrite")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resum" not in result.stderr and "rebuilt" not in result.stderr


def test_a_dask_worker_killed_mid_run(tree, tmp_path):
  """Dask reschedules the lost worker's tasks: the job finishes with the local runner's shards."""
  tree, reference, image = tree
  input_dir = _input_with_pipe(tree, tmp_path / "imagenet")
  output_dir = tmp_path / "shards"
  stop_feeding = threading.Event()

  def feed_the_pipe(
  ):  # every attempt to read it (a rescheduled task reads it again) gets the image
    while not stop_feeding.is_set():
      with contextlib.suppress(OSError):
        fd = os.open(input_dir / _PIPE, os.O_WRONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "wb") as pipe:
          os.set_blocking(fd, True)
          pipe.write(image)
      time.sleep(0.05)

  with test_runners.command_line_cluster(tmp_path) as (address, workers):
    job = subprocess.Popen(
        test_runners.command("--input_dir", input_dir, "--output_dir", output_dir,
                             "--num_shards_train=6", "--num_shards_validation=2",
                             test_runners.DASK_RUNNER, f"--dask_client_address={address}"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
      _wait_for_a_finished_shard(job, output_dir)
      os.killpg(workers[0].pid, signal.SIGKILL)
      feeder = threading.Thread(target=feed_the_pipe, daemon=True)
      feeder.start()
      _, stderr = job.communicate(timeout=300)
    finally:
      stop_feeding.set()
      with contextlib.suppress(ProcessLookupError):
        os.killpg(job.pid, signal.SIGKILL)
  assert job.returncode == 0, stderr[-3000:]
  ours, theirs = helpers.output_files(output_dir), helpers.output_files(reference)
  ours[manifest_lib.MANIFEST_NAME].pop("resume")
  theirs[manifest_lib.MANIFEST_NAME].pop("resume")
  assert ours == theirs
