"""torchvision's AlexNet trained with pytorch/examples' ImageNet recipe, on our shards, epoch by epoch.

What users pick instead of this project, on the same images: the shards are read through
`common.reader` (no TensorFlow), as README.md's "Using the shards elsewhere" shows.
  * The network is torchvision's `alexnet` (one tower, no LRN, 64-192-384-256-256 channels, an
    adaptive 6x6 average pool, dropout before fc6 and fc7), with PyTorch's default initialisation
    (torchvision leaves it as it is). Written out here from its published architecture because
    torchvision's wheel does not load beside the torch this project pins.
  * pytorch/examples' `imagenet/main.py`: SGD, momentum 0.9, weight decay 1e-4 on every parameter,
    batch 256, learning rate 0.01 for AlexNet (its README), divided by 10 every 30 epochs;
    RandomResizedCrop(224) and horizontal flips in training, Resize(256) and CenterCrop(224) in
    evaluation (our images are 256x256 already), normalised by ImageNet's channel mean and std.

`train_epochs` resumes from `work_dir/checkpoint.pt`, so an interrupted benchmark goes on where
it stopped, one epoch at a time. Imports torch (requirements-bench.txt).
"""

import math
import os
import time

import numpy as np
from PIL import Image

from common import reader
from common import schema

CROP = 224
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
RECIPE = {
    "batch_size": 256, "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
    "lr_step_epochs": 30
}


def torchvision_alexnet(num_classes):
  """torchvision's AlexNet architecture (models/alexnet.py), PyTorch's default initialisation."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  return nn.Sequential(nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),
                       nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True),
                       nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                       nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(), nn.Dropout(0.5),
                       nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                       nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes))


def random_resized_crop(pixels, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """torchvision's RandomResizedCrop(224) and a random horizontal flip, on uint8 HWC pixels."""
  height, width = pixels.shape[:2]
  for _ in range(10):
    area = height * width * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    if 0 < w <= width and 0 < h <= height:
      top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
      break
  else:  # torchvision's fallback: the central crop.
    h = w = min(height, width)
    top, left = (height - h) // 2, (width - w) // 2
  image = Image.fromarray(pixels[top:top + h, left:left + w]).resize((CROP, CROP), Image.BILINEAR)
  out = np.asarray(image)
  return out[:, ::-1] if rng.random() < 0.5 else out


def central_crop(pixels):
  top = (pixels.shape[0] - CROP) // 2
  left = (pixels.shape[1] - CROP) // 2
  return pixels[top:top + CROP, left:left + CROP]


def batches(manifest, split, batch_size, training, rng):
  """Normalised NCHW float32 batches and int64 labels; training shuffles and drops the remainder."""
  examples = list(reader.read_shards(manifest.shard_paths(split)))
  order = rng.permutation(len(examples)) if training else np.arange(len(examples))
  end = len(order) - len(order) % batch_size if training else len(order)
  for start in range(0, end, batch_size):
    chosen = [examples[i] for i in order[start:start + batch_size]]
    pixels = [reader.decode_image(e, manifest.encoding, manifest.image_size) for e in chosen]
    crops = [random_resized_crop(p, rng) if training else central_crop(p) for p in pixels]
    images = (np.stack(crops).astype(np.float32) / 255.0 - MEAN) / STD
    yield (np.ascontiguousarray(images.transpose(0, 3, 1, 2)),
           np.array([e[schema.LABEL] for e in chosen], np.int64))


def evaluate(net, manifest, rng):
  """Validation loss and top-1/top-5 accuracy; ties count against the model, as in ours."""
  import torch  # pylint: disable=import-outside-toplevel
  net.eval()
  loss_sum, hits1, hits5, count = 0.0, 0, 0, 0
  with torch.no_grad():
    for images, labels in batches(manifest, "validation", 256, False, rng):
      logits = net(torch.from_numpy(images))
      target = torch.from_numpy(labels)
      loss_sum += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
      label_logits = logits.gather(1, target[:, None])
      others = (logits >= label_logits).sum(1) - 1
      hits1 += int((others < 1).sum())
      hits5 += int((others < 5).sum())
      count += len(labels)
  return {"loss": loss_sum / count, "top1": hits1 / count, "top5": hits5 / count}


def train_epochs(manifest, work_dir, epochs, seed=0, on_epoch=None):
  """Trains up to `epochs`, resuming from `work_dir/checkpoint.pt`; after each epoch calls
  `on_epoch(epoch, metrics, seconds)` with the epoch's training and evaluation wall time."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  net = torchvision_alexnet(manifest.num_classes)
  optimizer = torch.optim.SGD(net.parameters(), lr=RECIPE["learning_rate"],
                              momentum=RECIPE["momentum"], weight_decay=RECIPE["weight_decay"])
  schedule = torch.optim.lr_scheduler.StepLR(optimizer, RECIPE["lr_step_epochs"], 0.1)
  path, done = os.path.join(work_dir, "checkpoint.pt"), 0
  if os.path.exists(path):
    saved = torch.load(path)
    net.load_state_dict(saved["net"])
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    done = saved["epoch"]
  loss_fn = torch.nn.CrossEntropyLoss()
  for epoch in range(done + 1, epochs + 1):
    rng = np.random.default_rng([seed, epoch])
    start = time.monotonic()
    net.train()
    for images, labels in batches(manifest, "train", RECIPE["batch_size"], True, rng):
      optimizer.zero_grad()
      loss = loss_fn(net(torch.from_numpy(images)), torch.from_numpy(labels))
      if not torch.isfinite(loss):
        raise ValueError(f"torchvision recipe: non-finite loss in epoch {epoch}")
      loss.backward()
      optimizer.step()
    schedule.step()
    metrics = evaluate(net, manifest, rng)
    seconds = time.monotonic() - start
    os.makedirs(work_dir, exist_ok=True)
    torch.save(
        {
            "net": net.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "epoch": epoch
        }, path + ".tmp")
    os.replace(path + ".tmp", path)
    if on_epoch:
      on_epoch(epoch, metrics, seconds)
