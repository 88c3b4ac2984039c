"""How a stopped job is told: worker exit statuses in words, a bounded wait, a full disk."""

import errno
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from common import records
from preprocess.conversion import resume
from preprocess.job import faults
from tests import helpers


@pytest.mark.parametrize("code, words", [
    (137, "killed by SIGKILL (exit status 137), most often the kernel's out-of-memory killer"),
    (-signal.SIGKILL, "killed by SIGKILL (exit status -9), most often"),
    (139, "killed by SIGSEGV (exit status 139)"),
    (-signal.SIGTERM, "killed by SIGTERM (exit status -15)"),
    (1, "exit status 1"),
])
def test_a_workers_exit_status_is_said_in_words(code, words):
  assert faults.describe_exit(code).startswith(words)


def test_a_runner_that_never_stops_after_losing_a_worker_is_stopped_in_one_line():
  """The runner is replaced by a block that, after its worker thread died, keeps logging what
  Beam's runner logs while its workers are ended, as it does on the main thread."""
  script = textwrap.dedent("""
      import logging, threading
      from absl import flags
      from preprocess.job import beam_logs
      from preprocess.job import faults
      flags.FLAGS.mark_as_parsed()
      runner = logging.getLogger("apache_beam.runners.portability.fn_api_runner.worker_handlers")
      def die():
        raise RuntimeError("Worker subprocess exited with return code 137")
      with beam_logs.filtered_stderr():
        with faults.watch(lambda: "3 of 8 shards are complete and kept in /data", grace_seconds=1):
          threading.Thread(target=die).start()
          while True:
            try:
              raise RuntimeError("Channel closed prematurely.")
            except RuntimeError:
              runner.exception("Error closing worker_handler")
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
  assert re.match(r"^(E\d{4} |ERROR:).*a worker process of the job died, killed by SIGKILL",
                  lines[0])
  assert "3 of 8 shards are complete and kept in /data; rerun the same command to resume" in lines[
      0]
  assert "the runner had not stopped 1 s after losing it, so the job was stopped" in lines[0]


def test_a_full_disk_stops_in_one_line_and_keeps_the_finished_shards(sample, tmp_path, monkeypatch):
  real = records.frame_record
  written = []

  def fill_the_disk(data):  # the third shard's first record finds the disk full
    if len(written) == 2 and not written[-1] == "full":
      written.append("full")
      raise OSError(errno.ENOSPC, "No space left on device")
    return real(data)

  real_write = resume.write_result
  monkeypatch.setattr(resume, "write_result",
                      lambda *args: written.append(args[1].file) or real_write(*args))
  monkeypatch.setattr(records, "frame_record", fill_the_disk)
  with pytest.raises(faults.Stopped) as stop:
    helpers.build_dataset(sample[0], tmp_path / "out", num_shards={"train": 3})
  assert stop.value.exit_code == 1
  assert str(stop.value) == (
      f"the job could not write (No space left on device); 2 of 4 shards are complete and kept in "
      f"{tmp_path / 'out'}; free some space and rerun the same command to resume")
  assert len(list((tmp_path / "out" / resume.RESULTS_NAME).glob("*.json"))) == 2
