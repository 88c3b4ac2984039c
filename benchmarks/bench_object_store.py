r"""Stage 1 on an object store: time, bytes read and requests per image, against the local disk.

  python -m benchmarks.bench_object_store --work_dir DIR [--train_per_class 250]
      [--val_per_class 50]

Builds one generated sample (10 classes, flat validation with the devkit; 3,000 images by default)
with `python -m preprocess.build_shards` and its default runner (a worker process per core), timed
from launch to exit: (local) the extracted tree on the local disk, written there; (gs_tree) the tree
in fake-gcs-server, written to it; (gs_archives) the ILSVRC-2012 release archives (a train tar of
class tars, the flat validation tar, the devkit's .tar.gz) in the server, written to it.
The inputs are uploaded straight to the server and the build reaches it through a counting proxy
(`STORAGE_EMULATOR_HOST`), so only the build's traffic is counted: the object data sent (bodies of
media GETs) over the input's bytes (goal <= 1.1: archives read by range, not fetched whole per
image), and the requests per image written by kind (object reads, listing, metadata, writes,
deletes and copies), each request kept in traffic_<case>.jsonl. Each gs output, fetched, is compared
with the local one (the manifest without its run options and input forms). The gs times include the
proxy, whose cost per request is measured last (512-byte range reads, direct and through it).

The build cannot reach Google (no key file; the metadata server a closed local port). Figures go
beside the machine and its load (the 2-core hosts are shared: load slows the builds, not their bytes
or requests) into figures.md and figures.json in --work_dir. Run by hand; not part of the tests.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

from absl import app
from absl import flags
from absl import logging

from benchmarks import counting_proxy
from sample import make_sample_data
from tests import object_stores
from tests.preprocess import archive_fixtures

FLAGS = flags.FLAGS

# Google's credential lookup kept on this machine, as in tests/preprocess/test_object_stores.py.
_NO_GOOGLE_CREDENTIALS = {
    "GOOGLE_APPLICATION_CREDENTIALS": "", "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9"
}
_BUCKET = "bench"


def make_inputs(work_dir):
  """The sample tree and its release archives, made once per size and kept in `work_dir`."""
  name = f"{FLAGS.train_per_class}x{FLAGS.val_per_class}"
  tree, archives = (os.path.join(work_dir, f"{kind}_{name}") for kind in ("tree", "archives"))
  if not os.path.isdir(tree):
    shutil.rmtree(tree + ".tmp", ignore_errors=True)
    make_sample_data.make_sample_tree(tree + ".tmp", images_per_class_train=FLAGS.train_per_class,
                                      images_per_class_val=FLAGS.val_per_class, val_layout="flat",
                                      broken_files=False)
    os.rename(tree + ".tmp", tree)
  if not os.path.isdir(archives):
    shutil.rmtree(archives + ".tmp", ignore_errors=True)
    archive_fixtures.ilsvrc2012(tree, archives + ".tmp")
    os.rename(archives + ".tmp", archives)
  return tree, archives


def folder_bytes(folder):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def run_build(input_dir, output_dir, env):
  """One `build_shards` run: its wall seconds and the 5-minute load average before and after."""
  command = [
      sys.executable, "-m", "preprocess.build_shards", "--input_dir", input_dir, "--output_dir",
      output_dir, "--progress_seconds=3600"
  ]
  load_before, start = os.getloadavg()[1], time.perf_counter()
  result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)
  seconds = time.perf_counter() - start
  if result.returncode:
    raise RuntimeError(f"build_shards {input_dir} failed: {result.stderr[-3000:]}")
  return {"seconds": seconds, "load_before": load_before, "load_after": os.getloadavg()[1]}


def dataset_files(folder):
  """relative path -> bytes of every output file; the manifest as a dict without its run options
  and input forms, which differ between the cases by design."""
  files = {}
  for directory, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, folder)] = f.read()
  manifest = json.loads(files["manifest.json"])
  manifest.pop("args")
  for split in manifest["splits"].values():
    split.pop("input")
  files["manifest.json"] = manifest
  return files


def images_figures(files, run):
  """The images the manifest of `files` counts, and their rate over the run's wall time."""
  images = sum(split["num_examples"] for split in files["manifest.json"]["splits"].values())
  return {"images": images, "images_per_second": images / run["seconds"]}


def traffic_figures(requests, input_prefix, input_bytes, images):
  """Bytes read over the input's bytes (all object data, and that of the input objects alone: the
  rest is the build's own files read back) and requests per image, in total and by kind."""
  by_kind = {kind: [r for r in requests if r["kind"] == kind] for kind in counting_proxy.KINDS}
  read_bytes = sum(r["received"] for r in by_kind["read"])
  input_read_bytes = sum(
      r["received"]
      for r in by_kind["read"]
      if urllib.parse.unquote(r["path"].partition("/o/")[2]).startswith(input_prefix))
  return {
      "input_bytes": input_bytes, "read_bytes": read_bytes,
      "read_over_input": read_bytes / input_bytes,
      "input_read_over_input": input_read_bytes / input_bytes,
      "written_bytes": sum(r["sent"] for r in by_kind["write"]), "requests": len(requests),
      "requests_per_image": len(requests) / images,
      "requests_by_kind": {kind: len(rs) for kind, rs in by_kind.items()},
      "per_image_by_kind": {kind: len(rs) / images for kind, rs in by_kind.items()}
  }


def machine():
  with open("/proc/cpuinfo") as f:
    model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  return {"cpu": model, "cores": os.cpu_count()}


def markdown_table(figures):
  header = ("case", "wall s", "images", "images/s", "read / input (input objects only)",
            "requests / image", *(f"{kind} / image" for kind in counting_proxy.KINDS),
            "identical to local", "load (5 min)")
  rows = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  for case, f in figures["cases"].items():
    traffic = ([
        f"{f['read_over_input']:.3f} ({f['input_read_over_input']:.3f})",
        f"{f['requests_per_image']:.3f}",
        *(f"{f['per_image_by_kind'][kind]:.3f}" for kind in counting_proxy.KINDS)
    ] if "requests" in f else ["-"] * (2 + len(counting_proxy.KINDS)))
    cells = (case, f"{f['seconds']:.1f}", str(f["images"]), f"{f['images_per_second']:.1f}",
             *traffic, f.get("identical", "-"), f"{f['load_before']:.2f} -> {f['load_after']:.2f}")
    rows.append("| " + " | ".join(cells) + " |")
  about, cost = figures["machine"], figures["proxy_ms_per_request"]
  return (f"{about['cores']}-core {about['cpu']}; the 5-minute load average in the last column "
          f"(the host may be shared)\n\n" + "\n".join(rows) + "\n\nA 512-byte range read: "
          f"{cost['direct']:.2f} ms direct, {cost['proxy']:.2f} ms through the proxy.\n")


def build_on_gcs(gcs, case, local_input, env, reference, work_dir):
  """Uploads `local_input`, builds it through a counting proxy, and compares the output."""
  input_url = gcs.upload(local_input, f"gs://{_BUCKET}/in_{case}")
  output_url = f"gs://{_BUCKET}/out_{case}"
  with counting_proxy.counting_proxy(gcs.url) as proxy:
    run = run_build(input_url, output_url, dict(env, STORAGE_EMULATOR_HOST=proxy.url))
  fetched = os.path.join(work_dir, f"fetched_{case}")
  shutil.rmtree(fetched, ignore_errors=True)
  files = dataset_files(gcs.download(output_url, fetched))
  differing = sorted(
      name for name in files.keys() | reference.keys() if files.get(name) != reference.get(name))
  with open(os.path.join(work_dir, f"traffic_{case}.jsonl"), "w") as f:
    f.writelines(json.dumps(request) + "\n" for request in proxy.requests)
  figures = dict(run, **images_figures(files, run))
  return dict(
      figures,
      **traffic_figures(proxy.requests, f"in_{case}/", folder_bytes(local_input),
                        figures["images"]),
      identical="yes" if not differing else f"no: {', '.join(differing)}")


def proxy_cost(gcs, reads=300):
  """Milliseconds per 512-byte range read, direct and through a counting proxy (best of two)."""
  gcs.put(f"gs://{_BUCKET}/probe", bytes(reads * 512))
  costs = {"direct": [], "proxy": []}
  with counting_proxy.counting_proxy(gcs.url) as proxy:
    for way, url in (("direct", gcs.url), ("proxy", proxy.url)) * 2:
      blob = object_stores.Gcs(url).client().bucket(_BUCKET).blob("probe")
      start = time.perf_counter()
      for i in range(reads):
        blob.download_as_bytes(start=i * 512, end=i * 512 + 511, raw_download=True, checksum=None)
      costs[way].append((time.perf_counter() - start) / reads * 1000)
  return {way: min(values) for way, values in costs.items()}


def main(argv):
  del argv
  work_dir = os.path.abspath(FLAGS.work_dir)
  os.makedirs(work_dir, exist_ok=True)
  tree, archives = make_inputs(work_dir)
  figures = {"machine": machine(), "cases": {}}
  logging.info("machine: %s", figures["machine"])
  local_out = os.path.join(work_dir, "out_local")
  shutil.rmtree(local_out, ignore_errors=True)
  with tempfile.TemporaryDirectory() as home, object_stores.gcs_server() as gcs:
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    env.update(_NO_GOOGLE_CREDENTIALS, HOME=home, CLOUDSDK_CONFIG=home)
    run = run_build(tree, local_out, env)
    reference = dataset_files(local_out)
    figures["cases"]["local"] = dict(run, **images_figures(reference, run))
    gcs.make_bucket(_BUCKET)
    for case, local_input in (("gs_tree", tree), ("gs_archives", archives)):
      figures["cases"][case] = build_on_gcs(gcs, case, local_input, env, reference, work_dir)
      logging.info("%s: %s", case, figures["cases"][case])
    figures["proxy_ms_per_request"] = proxy_cost(gcs)
  table = markdown_table(figures)
  with open(os.path.join(work_dir, "figures.md"), "w") as f:
    f.write(table)
  with open(os.path.join(work_dir, "figures.json"), "w") as f:
    json.dump(figures, f, indent=2)
  logging.info("figures: %s", figures)
  print(table)


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_string(
      "work_dir", None, "Scratch folder: the inputs (kept between runs, per "
      "size), the outputs, the traffic logs and the figures.")
  flags.DEFINE_integer("train_per_class", 250, "Training images per class (10 classes).")
  flags.DEFINE_integer("val_per_class", 50, "Validation images per class (flat, with the devkit).")
  flags.mark_flag_as_required("work_dir")


if __name__ == "__main__":
  define_flags()
  app.run(main)
