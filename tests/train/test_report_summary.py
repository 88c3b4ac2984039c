"""The report's run summary: steps and epochs from the checkpoint; a run that ended at chance."""

import pytest

from common import dataset as dataset_lib
from train import config as config_lib
from train.errors import DeadNetworkError
from train.model_dir import directory as model_dir_lib
from train.report import curves
from train.report import page as page_lib
from train.run import chance
from train.run import train

from tests.train.conftest import TINY_CONFIG
from tests.train.test_liveness import KILLING_RATE

PAGE_OPTIONS = dict(batch_size=4, neighbour_pool=0, num_queries=0, num_neighbours=1,
                    num_predictions=2, num_confusions=1)


@pytest.fixture(scope="module")
def flat_run(dataset_dir, tmp_path_factory):
  """12 steps (3 epochs of 4) logged only at step 1, at a rate that leaves the loss at ln(3)."""
  model_dir = str(tmp_path_factory.mktemp("flat") / "model")
  config = config_lib.Config(
      **{**TINY_CONFIG, "epochs": 3, "log_every": 100, "learning_rate": 1e-5})
  # Batches of 4 images of 3 classes swing more than ImageNet's 1% below ln(3); the summary's
  # reading of the run's verdict does not depend on the band's width.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(chance, "BAND_BELOW", 0.1)
    train.train_and_evaluate(config, dataset_lib.load(dataset_dir), model_dir)
  return model_dir


def test_steps_and_epochs_come_from_the_checkpoint_not_the_logged_scalars(flat_run, dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  scalars = curves.read_curves(flat_run)
  assert max(scalars["train/loss"][0]) == 1  # the only logged step
  summary = page_lib.run_summary(manifest, model_dir_lib.read_config(flat_run), scalars, flat_run,
                                 None)
  assert summary["steps"] == 12 and summary["epochs"] == pytest.approx(3.0)


def test_a_run_that_ended_at_chance_says_so(flat_run, dataset_dir):
  context = page_lib.build_context(dataset_lib.load(dataset_dir), flat_run, "validation",
                                   **PAGE_OPTIONS)
  assert context["summary"]["at_chance"]["since"] == 0
  assert context["summary"]["at_chance"]["steps"] == 12
  page = page_lib.render(context)
  assert "The run ended at chance" in page and "ln(3) from step 0 on (12 steps)" in page
  assert "--bias_init=caffe" in page


def test_a_run_that_died_says_so_and_not_that_it_was_at_chance(dataset_dir, tmp_path):
  model_dir = str(tmp_path / "model")
  config = config_lib.Config(**{**TINY_CONFIG, "epochs": 3, "learning_rate": KILLING_RATE})
  with pytest.raises(DeadNetworkError):
    train.train_and_evaluate(config, dataset_lib.load(dataset_dir), model_dir)
  summary = page_lib.training_progress(dataset_lib.load(dataset_dir),
                                       model_dir_lib.read_config(model_dir), model_dir)
  assert summary["dead"]["at"] == summary["steps"] and summary["at_chance"] is None
  page = page_lib.render({
      **page_lib.build_context(dataset_lib.load(dataset_dir), model_dir, "validation", **PAGE_OPTIONS)
  })
  assert f"The network died at step {summary['steps']}" in page
  assert "The run ended at chance" not in page
