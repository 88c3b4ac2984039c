"""The same job on other runners and worker counts gives byte-identical shards and manifest.

Also the command line: user errors are one line and a non-zero exit, and a run killed at any moment
leaves no manifest, after which the next run completes cleanly.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from absl import flags
from apache_beam.runners.portability import prism_runner
from distributed import Client
from distributed import LocalCluster

from common import manifest as manifest_lib
from preprocess import build_shards
from preprocess.job import build
from preprocess.job import output_folder
from preprocess.job import runners
from tests import helpers
from tests.preprocess import archive_fixtures
from tests.preprocess import test_archives

DASK_RUNNER = "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"
_PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_dask_cluster_with_two_workers_matches_the_local_runner(sample, built, tmp_path):
  input_dir, _ = sample
  with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                    dashboard_address=None) as cluster:
    helpers.build_dataset(
        input_dir, tmp_path / "dask", num_shards={"train": 3},
        beam_args=[DASK_RUNNER, f"--dask_client_address={cluster.scheduler_address}"])
  assert helpers.output_files(tmp_path / "dask") == helpers.output_files(built[0])


def test_default_runner_never_tries_prism(sample, built, tmp_path, monkeypatch):
  """DirectRunner would try Prism first (a download at run time) and swallow its failure."""
  tried = []
  monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline",
                      lambda self, *args: tried.append(args) or pytest.fail("Prism was tried"))
  options = build_shards.pipeline_options(["--direct_num_workers=2"])
  assert options.get_all_options()["runner"] == "preprocess.job.runners.LocalRunner"
  manifest = build.run_build(
      build.BuildOptions(str(sample[0]), str(tmp_path / "out"), num_shards={"train": 3},
                         progress_seconds=3600), options)
  assert not tried
  assert manifest["splits"] == built[1]["splits"]
  assert helpers.output_files(tmp_path / "out") == helpers.output_files(built[0])


def test_importing_the_entry_module_defines_no_flags():
  """Flags are defined only when run as a command, like every train entry module's."""
  assert not {"input_dir", "output_dir", "max_skip_fraction"} & set(flags.FLAGS)
  flag_values = flags.FlagValues()
  build_shards.define_flags(flag_values)
  flag_values(["build_shards", "--input_dir=i", "--output_dir=o", "--num_shards_test=2"])
  assert (flag_values.input_dir, flag_values.num_shards_test, flag_values.seed) == ("i", 2, 0)
  with pytest.raises(flags.IllegalFlagValueError, match="max_skip_fraction"):
    flag_values["max_skip_fraction"].parse("nan")
    flag_values.validate_all_flags()


def test_a_named_runner_is_passed_through_unchanged():
  args = ["--runner=DirectRunner", "--direct_num_workers=3"]
  assert runners.with_default_runner(args) == args
  assert runners.with_default_runner(["--direct_num_workers=3"
                                     ]) == (runners.LOCAL_RUNNER_ARGS + ["--direct_num_workers=3"])


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def command_line_cluster(tmp_path, worker_args=()):
  """`dask scheduler` and two `dask worker`s on 127.0.0.1, as a user starts them; always stopped.

  Yields:
    (the scheduler's address, the two worker processes).
  """
  port = _free_port()
  # The project on PYTHONPATH, as WORKSPACE.md tells cluster users.
  env = dict(os.environ, PYTHONPATH=_PROJECT)
  dask = os.path.join(os.path.dirname(sys.executable), "dask")
  quiet = ["--no-dashboard"]
  processes = [
      subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                        str(port), *quiet], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, start_new_session=True)
  ]
  address = f"tcp://127.0.0.1:{port}"
  try:
    processes += [
        subprocess.Popen([
            dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", *worker_args, *quiet
        ], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True) for _ in range(2)
    ]
    with Client(address, timeout=60) as client:
      client.wait_for_workers(2, timeout=120)
    yield address, processes[1:]
  finally:
    for process in processes:
      os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
      try:
        process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_command_line_dask_cluster_runs_the_documented_command(sample, built, tmp_path):
  """Training images as the release's tar of class tars, read by byte ranges on the workers."""
  input_dir, _ = sample
  form = tmp_path / "imagenet"
  shutil.copytree(input_dir / "val", form / "val")
  shutil.copy(input_dir / "synset_words.txt", form)
  archive_fixtures.pack_train_tar(input_dir, str(form / "ILSVRC2012_img_train.tar"))
  with command_line_cluster(tmp_path) as (address, _):
    result = run("--input_dir", form, "--output_dir", tmp_path / "out", "--num_shards_train=3",
                 DASK_RUNNER, f"--dask_client_address={address}", timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "indexed 10 archive units" in result.stderr
  assert test_archives.comparable(tmp_path / "out") == test_archives.comparable(built[0])


def test_dask_workers_without_the_project_get_one_line(sample, tmp_path):
  # A worker preload that makes the project unimportable, as on a worker where it is not installed.
  hide = tmp_path / "hide_project.py"
  hide.write_text("import sys\n"
                  "class Hide:\n"
                  "  def find_spec(self, name, path=None, target=None):\n"
                  "    if name.split('.')[0] in ('common', 'preprocess'):\n"
                  "      raise ModuleNotFoundError(f'No module named {name!r}')\n"
                  "sys.meta_path.insert(0, Hide())\n")
  with command_line_cluster(tmp_path, ["--preload", str(hide)]) as (address, _):
    result = run("--input_dir", sample[0], "--output_dir", tmp_path / "out", DASK_RUNNER,
                 f"--dask_client_address={address}", timeout=120)
  assert result.returncode == 1
  errors = _errors(result.stderr)
  assert len(errors) == 1, result.stderr[-3000:]
  assert "the Dask workers cannot import common" in errors[0]


def command(*args):
  return [sys.executable, "-m", "preprocess.build_shards", *map(str, args)]


def run(*args, timeout=600):
  return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout)


def _errors(stderr):
  return [line for line in stderr.splitlines() if line.startswith("E1") or "Traceback" in line]


def test_killed_run_leaves_no_manifest_and_the_rerun_completes(sample, built, tmp_path):
  """Kills the default multi-process runner mid-write, then reruns it with two workers."""
  input_dir, _ = sample
  output_dir = tmp_path / "out"
  job = subprocess.Popen(
      command("--input_dir", input_dir, "--output_dir", output_dir, "--num_shards_train=3"),
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + 300
  while not (output_dir / output_folder.TMP_NAME).exists() and job.poll() is None:
    assert time.time() < deadline
    time.sleep(0.05)
  os.killpg(job.pid, signal.SIGKILL)
  job.wait()
  assert not (output_dir / manifest_lib.MANIFEST_NAME).exists()
  result = run("--input_dir", input_dir, "--output_dir", output_dir, "--num_shards_train=3",
               "--direct_num_workers=2")
  assert result.returncode == 0, result.stderr[-2000:]
  assert helpers.output_files(output_dir) == helpers.output_files(built[0])
  assert not (output_dir / output_folder.TMP_NAME).exists()
  assert "train: " in result.stderr and "images written" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--input_dir", "{tmp}/missing", "--output_dir", "{tmp}/out"
     ], "--input_dir .*missing: no such folder"),
    (["--input_dir", "{tmp}", "--output_dir", "{tmp}/out"], "no train/ folder"),
    (["--input_dir", "{sample}", "--output_dir", "{built}"], "already holds a complete dataset"),
    (["--input_dir", "{sample}", "--output_dir", "{tmp}/out", "--num_shard_train=2"
     ], "unknown flag --num_shard_train"),
    (["--input_dir", "{sample}", "--output_dir", "{tmp}/out", "--num_shards_test=2"
     ], "num_shards_test=2, but --input_dir has no test split"),
])
def test_user_errors_are_one_line_and_exit_nonzero(sample, built, tmp_path, args, message):
  (tmp_path / "notes.txt").write_text("not imagenet")
  values = {"tmp": tmp_path, "sample": sample[0], "built": built[0]}
  result = run(*[a.format(**values) for a in args])
  assert result.returncode == 1
  errors = _errors(result.stderr)
  assert len(errors) == 1, result.stderr[-3000:]
  assert re.search(message, errors[0]), errors[0]


def test_missing_required_flag_is_a_usage_error():
  result = run("--input_dir", "somewhere")
  assert result.returncode != 0
  assert "--output_dir" in result.stderr and "Traceback" not in result.stderr
