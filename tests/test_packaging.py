"""What cluster workers receive: `--setup_file=./setup.py` ships the packages and their requirements,
and nothing they install imports a test dependency."""

import pathlib
import shutil
import subprocess
import sys
import tarfile

REPO = pathlib.Path(__file__).resolve().parents[1]


def _requirements():
  lines = (REPO / "requirements.txt").read_text().splitlines()
  return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_setup_file_sdist_ships_the_packages_and_requirements_but_not_the_sample(tmp_path):
  # Beam's --setup_file builds an sdist with `setup.py sdist` and workers pip-install it; built from
  # a copy so the worktree's egg-info is left alone.
  source = tmp_path / "source"
  source.mkdir()
  for name in ("setup.py", "pyproject.toml", "requirements.txt", "requirements-gcp.txt",
               "requirements-aws.txt", "README.md", "MANIFEST.in"):
    shutil.copy(REPO / name, source)
  for package in ("common", "preprocess", "train", "sample"):
    shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
  subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d",
                  str(tmp_path / "dist")], cwd=source, check=True, capture_output=True, timeout=300)
  (archive,) = (tmp_path / "dist").iterdir()
  with tarfile.open(archive) as tar:
    names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    requires = next(
        tar.extractfile(m).read().decode()
        for m in tar.getmembers()
        if m.name.endswith(".egg-info/requires.txt"))
  assert {
      "preprocess/conversion/convert.py", "preprocess/stores.py", "common/manifest.py",
      "train/main.py", "requirements.txt", "requirements-gcp.txt", "requirements-aws.txt"
  } <= names
  assert not [name for name in names if name.startswith("sample")]
  # The base requirements, then each object store's extra (pip install '.[gcp]', '.[aws]').
  base, *extras = requires.split("\n\n")
  assert base.split() == _requirements()
  assert sorted(extra.strip() for extra in extras if extra.strip()) == [
      "[aws]\napache-beam[aws]==2.77.0", "[gcp]\napache-beam[gcp]==2.77.0"
  ]


def test_stage_one_imports_no_scikit_image():
  # Every module a Beam worker may import: scikit-image is a test dependency, absent there.
  code = ("import importlib, pkgutil, sys\n"
          "import common, preprocess\n"
          "for package in (common, preprocess):\n"
          "  for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
          "    importlib.import_module(module.name)\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'skimage'))")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == "[]"
