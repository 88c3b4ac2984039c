"""ImageNetV2 builds: folder numbers read as integers, folder and tar alike, the training dataset's
classes and statistics, and a model trained on those classes scores the result."""

import hashlib
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from common import dataset as dataset_lib
from common import imagenetv2
from common import manifest as manifest_lib
from preprocess.inputs import sources
from tests import helpers
from tests import datasets

# Twelve classes: sorted as strings, folders "10" and "11" come before "2", so a loader that sorts
# folder names (torchvision's ImageFolder) labels ten of them wrong.
NUM_CLASSES = 12
SYNSETS = [f"n{1_000_000 + 37 * i:08d}" for i in range(NUM_CLASSES)]
PER_CLASS = 2
FOLDER = imagenetv2.folder_name("matched-frequency")


@pytest.fixture(scope="module")
def training_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("training"))
  records = [(f"train/{w}/{w}_{i}.JPEG", label)
             for label, w in enumerate(SYNSETS)
             for i in range(PER_CLASS)]
  return datasets.write_dataset(directory, SYNSETS, {"train": records})


def write_v2_folder(root, numbers=range(NUM_CLASSES), folder=FOLDER, seed=1):
  """`root/<folder>/<n>/<sha1>.jpeg`, PER_CLASS images in each class folder n, as released."""
  rng = np.random.default_rng(seed)
  for number in numbers:
    os.makedirs(os.path.join(root, folder, str(number)), exist_ok=True)
    for _ in range(PER_CLASS):
      data = datasets.jpeg(datasets.class_pixels(int(str(number).strip("x")) % 1000, rng, 200))
      name = hashlib.sha1(data).hexdigest() + ".jpeg"
      with open(os.path.join(root, folder, str(number), name), "wb") as f:
        f.write(data)
  return os.path.join(root, folder)


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory, training_dir):
  """The matched-frequency fixture built from its folder."""
  source = write_v2_folder(str(tmp_path_factory.mktemp("v2_input")))
  output = str(tmp_path_factory.mktemp("v2_shards"))
  helpers.build_dataset(source, output, classes_from=training_dir, num_shards={"test": 2})
  return source, output


def test_folder_numbers_are_read_as_integers(v2_dir):
  _, output = v2_dir
  records = helpers.read_records(output, imagenetv2.SPLIT)
  assert len(records) == NUM_CLASSES * PER_CLASS
  for record in records:
    folder, number, _ = record["image/filename"].split("/")
    assert folder == FOLDER
    assert record["image/class/label"] == int(number), record["image/filename"]
    assert record["image/class/synset"] == SYNSETS[int(number)]


def test_manifest_is_evaluation_only_in_the_training_classes(v2_dir, training_dir):
  _, output = v2_dir
  data = dataset_lib.load(output).data
  training = dataset_lib.load(training_dir).data
  assert list(data["splits"]) == [imagenetv2.SPLIT]
  assert data["classes"] == training["classes"]
  assert data["stats"] == training["stats"]
  assert imagenetv2.variant_of(data) == "matched-frequency"
  assert data["splits"]["test"]["class_counts"] == {w: PER_CLASS for w in SYNSETS}
  assert data["args"]["classes_from"] == training_dir
  np.testing.assert_array_equal(np.load(os.path.join(output, "mean.npy")),
                                np.load(os.path.join(training_dir, "mean.npy")))


def test_tar_gives_the_folder_s_shards(v2_dir, training_dir, tmp_path):
  source, output = v2_dir
  with tarfile.open(tmp_path / "imagenetv2-matched-frequency.tar", "w") as tar:
    tar.add(source, arcname=FOLDER)
  from_tar = str(tmp_path / "from_tar")
  manifest = helpers.build_dataset(tmp_path, from_tar, classes_from=training_dir,
                                   num_shards={"test": 2})
  assert manifest["splits"]["test"]["input"].startswith("imagenetv2 matched-frequency tar ")
  folder_files, tar_files = helpers.output_files(output), helpers.output_files(from_tar)
  for files in (folder_files, tar_files):
    files[manifest_lib.MANIFEST_NAME]["splits"]["test"].pop("input")
  assert folder_files == tar_files


def test_variant_folder_inside_the_input_and_other_variants(training_dir, tmp_path):
  write_v2_folder(str(tmp_path / "in"), numbers=range(3),
                  folder=imagenetv2.folder_name("top-images"))
  manifest = helpers.build_dataset(tmp_path / "in", tmp_path / "out", classes_from=training_dir)
  assert imagenetv2.variant_of(manifest) == "top-images"
  assert manifest["splits"]["test"]["num_examples"] == 3 * PER_CLASS


@pytest.mark.parametrize("case, message", [
    ("not_a_number", "is not a class number"),
    ("too_high", "has no class in --classes_from"),
    ("compressed", "decompress it first"),
    ("nothing", "no ImageNetV2 folder"),
    ("two_variants", "build each ImageNetV2 variant on its own"),
    ("flag", "cannot be combined with --classes_from"),
])
def test_refusals(case, message, training_dir, tmp_path):
  source, options = tmp_path / "in", {}
  if case == "not_a_number":
    write_v2_folder(str(source), numbers=["0", "x1"])
  elif case == "too_high":
    write_v2_folder(str(source), numbers=[0, NUM_CLASSES])
  elif case == "compressed":
    folder = write_v2_folder(str(tmp_path / "raw"), numbers=[0])
    os.makedirs(source)
    with tarfile.open(source / "imagenetv2-matched-frequency.tar.gz", "w:gz") as tar:
      tar.add(folder, arcname=FOLDER)
  elif case == "nothing":
    os.makedirs(source / "train")
    Image.new("RGB", (8, 8)).save(source / "train" / "a.JPEG")
  elif case == "two_variants":
    write_v2_folder(str(source), numbers=[0])
    write_v2_folder(str(source), numbers=[0], folder=imagenetv2.folder_name("threshold0.7"))
  else:
    write_v2_folder(str(source), numbers=[0])
    options = {"devkit_meta": str(tmp_path / "meta.mat")}
  with pytest.raises(sources.InputError, match=message):
    helpers.build_dataset(source, tmp_path / "out", classes_from=training_dir, **options)


def test_classes_from_must_be_a_dataset(tmp_path):
  write_v2_folder(str(tmp_path / "in"), numbers=[0])
  with pytest.raises(sources.InputError, match="no manifest.json"):
    helpers.build_dataset(tmp_path / "in", tmp_path / "out", classes_from=str(tmp_path / "none"))


def test_a_model_of_the_training_classes_scores_it_and_cannot_train_on_it(
    v2_dir, training_dir, tmp_path):
  # pylint: disable=import-outside-toplevel  (TensorFlow, for this test only)
  from train import config as config_lib
  from train.errors import TrainingError
  from train import evaluate
  from train.evaluation import trained
  from train.report import page
  from train.run import train
  _, output = v2_dir
  model_dir = str(tmp_path / "model")
  config = config_lib.Config(width=0.0625, batch_size=4, epochs=1, max_steps=1, log_every=1,
                             checkpoint_every=100, shuffle_buffer=8, seed=0)
  train.train_and_evaluate(config, dataset_lib.load(training_dir), model_dir)
  v2 = dataset_lib.load(output)
  assert trained.default_split(v2) == imagenetv2.SPLIT
  result = trained.evaluate_model(v2, model_dir, imagenetv2.SPLIT, batch_size=5)
  count = NUM_CLASSES * PER_CLASS
  assert result["count"] == count
  assert evaluate.coverage(
      v2, imagenetv2.SPLIT,
      count) == (f"test: {count} of ImageNetV2 MatchedFrequency's 10,000 images scored (the set is "
                 f"incomplete: its figures are not comparable with published ones)")
  assert evaluate.coverage(v2, imagenetv2.SPLIT, 10_000).endswith("10,000 images scored")
  assert evaluate.coverage(dataset_lib.load(training_dir), "validation", count) is None
  with pytest.raises(
      TrainingError, match=r"ImageNetV2 MatchedFrequency dataset .* no training "
      r"split; train on the dataset whose classes it took"):
    train.train_and_evaluate(config, v2, str(tmp_path / "on_v2"))
  assert not (tmp_path / "on_v2").exists()
  context = page.build_context(v2, model_dir, imagenetv2.SPLIT, batch_size=6, neighbour_pool=0,
                               num_queries=1, num_neighbours=1, num_predictions=2, num_confusions=1)
  assert context["count"] == count
  # Twelve classes: the published figures (1,000 classes) do not apply.
  assert context["metrics"]["references"] == []
  assert "central crop, test, ImageNetV2 MatchedFrequency" in page.render(context)
