"""`common.quiet` silences TensorFlow's loading chatter without loading TensorFlow itself."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(code, **env):
  """Runs `code` in a fresh interpreter (this one has TensorFlow loaded); returns (stdout, stderr)."""
  environ = {
      k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ALEXNET_FULL_LOGS")
  }
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**environ, **env}, check=True, timeout=300)
  return result.stdout.strip(), result.stderr


def test_a_later_tensorflow_import_is_silent():
  # The level alone does not hide the lines TensorFlow's libraries print while they load (the
  # full-logs run shows them), so this fails unless the import itself is silenced.
  _, quiet_stderr = _run("from common import quiet\nimport tensorflow\n")
  _, full_stderr = _run("from common import quiet\nimport tensorflow\n", ALEXNET_FULL_LOGS="1")
  assert quiet_stderr == ""
  assert "I0000" in full_stderr or "InitializeLog" in full_stderr


@pytest.mark.parametrize("module", ["common.quiet", "preprocess.build_shards"])
def test_stage_one_launcher_does_not_import_tensorflow(module):
  stdout, _ = _run(f"import sys\nimport {module}\nprint('tensorflow' in sys.modules)\n")
  assert stdout == "False"
