"""What differs between the stores Beam's filesystems reach: connecting, their errors, ranged reads.

Below every room, beside `paths` (which every room calls): `paths` holds the operations, this module
what each store needs for them.

* Connecting (`connect`): the launcher and every worker hand the pipeline options (S3's endpoint,
  region and keys) to Beam's `FileSystems` before their first file access. A missing filesystem is
  one line naming the extra to install. Google's default credentials are looked up once, without
  Beam's retries (four, with exponential backoff, each printing a traceback, in the launcher and
  again in every worker: about a minute); without any, the client connects anonymously, as Beam
  would after its retries, and a refusal says how to give credentials (`credentials_hint`).
* Errors (`classify`): each store reports a missing object, a refusal and a failure in exception
  types of its own, raised bare or inside Beam's `BeamIOError`; `classify` reads the HTTP status or
  error code from any of them.
* Ranged reads (`read_range`): Beam's readers for gs:// and s3:// fetch 16 MiB ahead of every read,
  so reading a 110 KB archive member cost 16 MiB; an image's byte range is one exact request here.
* Small objects, existence, deletes and renames go through one client per process here. Beam's
  S3 filesystem makes a new boto3 client for every operation (0.3 s each against a local server,
  where the request itself takes 0.01 s), and its GCS deletes and renames go through GCS's batch
  API, which fake-gcs-server (the emulator the tests run against) answers with an empty response
  (fsouza/fake-gcs-server#411); here each is one request, deletes in parallel. A small object is
  one upload, which the stores make visible only once complete.
"""

import concurrent.futures
import logging
import os
import threading

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

# The pip extra of this project (and of apache-beam) that installs each scheme's filesystem.
EXTRAS = {"gs": "gcp", "s3": "aws", "azfs": "azure", "hdfs": "hadoop"}
MISSING, DENIED, UNREADABLE = "missing", "denied", "unreadable"
# Object stores, read here by exact ranged requests (`read_range`).
RANGED = ("gs", "s3")
# Error codes the stores send beside (or instead of) an HTTP status.
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "NotFound", "404"}
_DENIED_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "401", "ExpiredToken",
    "InvalidToken", "AllAccessDisabled"
}
_CREDENTIAL_ERRORS = {
    "DefaultCredentialsError", "RefreshError", "NoCredentialsError", "PartialCredentialsError",
    "TransportError"
}
_PARALLEL_DELETES = 16

_state = threading.local()
# What `connect` set up; the clients made from it are dropped when it is called again.
_connected = {
    "options": None, "google_looked_up": False, "anonymous_gcs": False, "s3": None, "generation": 0
}


def scheme(path):
  return FileSystems.get_scheme(path)


def connect(pipeline_options=None, paths=()):
  """Readies this process's filesystems: the launcher with the paths it will touch, a worker bare.

  Args:
    pipeline_options: the job's `PipelineOptions` (None: the defaults).
    paths: the paths of the job's flags; their filesystems must be installed.

  Raises:
    Unavailable: a path's filesystem is not installed.
  """
  options = pipeline_options or PipelineOptions([])
  FileSystems.set_options(options)
  if options is not _connected["options"]:
    _connected.update(options=options, s3=None, generation=_connected["generation"] + 1)
  for path in paths:
    try:
      FileSystems.get_filesystem(path)
    except ValueError:
      extra = EXTRAS.get(scheme(path))
      how = (f"pip install 'alexnet-imagenet[{extra}]' (or -r requirements-{extra}.txt)"
             if extra else "install the Beam filesystem for it")
      raise Unavailable(f"{path}: Beam has no filesystem for {scheme(path)}:// installed here; "
                        f"{how}") from None
  if any(scheme(path) == "gs" for path in paths) or os.environ.get("STORAGE_EMULATOR_HOST"):
    _google_credentials()
  s3_paths = [path for path in paths if scheme(path) == "s3"]
  if s3_paths and not _aws_credentials_found(options):
    raise NoCredentials(f"{s3_paths[0]}: no AWS credentials were found; "
                        f"{credentials_hint(s3_paths[0])}")


class Unavailable(ValueError):
  """A path whose filesystem is not installed."""


class NoCredentials(ValueError):
  """A store that needs credentials, and none were given or found."""


def _aws_credentials_found(options):
  """Whether the S3 options or boto3's own chain (environment, files, instance) give keys: without
  them Beam's S3 filesystem retries every request for minutes before it fails."""
  if options.get_all_options().get("s3_access_key_id"):
    return True
  import boto3  # pylint: disable=import-outside-toplevel
  return boto3.session.Session().get_credentials() is not None


def _google_credentials():
  """Finds Google's default credentials once, or settles Beam on anonymous access at once."""
  if _connected["google_looked_up"]:
    return
  _connected["google_looked_up"] = True
  try:
    import google.auth  # pylint: disable=import-outside-toplevel
    from google.auth import exceptions as auth_exceptions  # pylint: disable=import-outside-toplevel
    from apache_beam.internal.gcp import auth  # pylint: disable=import-outside-toplevel
  except ImportError:  # no gcp extra: `connect` names it for a gs:// path
    return
  # google-auth warns that the metadata server did not answer, which only says "not on GCE".
  google_auth_logger = logging.getLogger("google.auth")
  level = google_auth_logger.level
  google_auth_logger.setLevel(logging.ERROR)
  try:
    google.auth.default()
    return  # Beam's own lookup now succeeds at its first try
  except auth_exceptions.DefaultCredentialsError:
    pass
  finally:
    google_auth_logger.setLevel(level)
  # Beam caches its lookup's result per process (`_Credentials`, apache-beam 2.77); None is its
  # anonymous client, what it settles on after its retries (tests/preprocess/test_object_stores.py
  # fails if that cache moves).
  with auth._Credentials._credentials_lock:  # pylint: disable=protected-access
    auth._Credentials._credentials_init = True  # pylint: disable=protected-access
    auth._Credentials._credentials = None  # pylint: disable=protected-access
  _connected["anonymous_gcs"] = True


def credentials_hint(path):
  """How to give the store of `path` credentials, for a refusal's message ("" if not a cloud)."""
  if scheme(path) == "gs":
    found = ("no Google credentials were found, so the request was anonymous; "
             if _connected["anonymous_gcs"] else "")
    return (f"{found}run `gcloud auth application-default login`, or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service account's key file")
  if scheme(path) == "s3":
    return ("give keys allowed to use this bucket with --s3_access_key_id and "
            "--s3_secret_access_key (--s3_endpoint_url for a server other than AWS), or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
  return ""


def classify(error):
  """(kind, detail) of a store's exception: kind one of MISSING, DENIED, UNREADABLE, or None.

  None means the exception is not a store's (a bug, a bad value): it is not translated. The detail
  is the innermost store error's first line.
  """
  for cause in _causes(error):
    kind = _kind_of(cause)
    if kind:
      return kind, f"{cause.__class__.__name__}: {' '.join(str(cause).split())[:300]}"
  return None, None


def _causes(error):
  """The error, what Beam wrapped in it, and what it was raised from, innermost store errors too."""
  seen, stack = set(), [error]
  while stack:
    cause = stack.pop()
    if cause is None or id(cause) in seen:
      continue
    seen.add(id(cause))
    details = getattr(cause, "exception_details", None)
    if isinstance(details, dict):  # BeamIOError: {path: the store's exception}
      stack.extend(v for v in details.values() if isinstance(v, BaseException))
      continue
    yield cause
    stack.extend([cause.__context__, cause.__cause__])


def _kind_of(error):
  name = error.__class__.__name__
  if name in _CREDENTIAL_ERRORS:
    return DENIED
  status = _status(error)
  if status == 404 or _code(error) in _MISSING_CODES:
    return MISSING
  if status in (401, 403) or _code(error) in _DENIED_CODES:
    return DENIED
  if isinstance(error, FileNotFoundError):
    return MISSING
  if isinstance(error, PermissionError):
    return DENIED
  if status or name in ("EndpointConnectionError", "ConnectionError", "ConnectTimeoutError",
                        "ReadTimeoutError", "ServiceUnavailable", "RetryError") or isinstance(
                            error, (OSError, ConnectionError, TimeoutError)):
    return UNREADABLE
  return None


def _status(error):
  """The HTTP status a store's exception carries, or None."""
  code = getattr(error, "code", None)  # google.api_core's errors; Beam's S3ClientError
  if isinstance(code, int) and 100 <= code < 600:
    return int(code)
  response = getattr(error, "response", None)
  if isinstance(response, dict):  # botocore's ClientError
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
  status = getattr(response, "status_code", None)  # google.resumable_media's InvalidResponse
  return status if isinstance(status, int) else None


def _code(error):
  response = getattr(error, "response", None)
  if isinstance(response, dict):
    return response.get("Error", {}).get("Code")
  return None


def read_range(path, start, size):
  """`size` bytes of `path` from `start` (fewer at its end), in one request on gs:// and s3://."""
  if size <= 0:
    return b""
  kind = scheme(path)
  if kind == "gs":
    bucket, name = _split(path)
    blob = _gcs_client().bucket(bucket).blob(name)
    return blob.download_as_bytes(start=start, end=start + size - 1, raw_download=True,
                                  checksum=None)
  if kind == "s3":
    bucket, name = _split(path)
    response = _s3_client().get_object(Bucket=bucket, Key=name,
                                       Range=f"bytes={start}-{start + size - 1}")
    return response["Body"].read()
  with FileSystems.open(path, compression_type="uncompressed") as f:
    f.seek(start)
    return f.read(size)


def read_whole(path):
  """The bytes of `path`: one request on gs:// and s3:// (Beam's readers first ask its size)."""
  kind = scheme(path)
  if kind == "gs":
    bucket, name = _split(path)
    return _gcs_client().bucket(bucket).blob(name).download_as_bytes(raw_download=True,
                                                                     checksum=None)
  if kind == "s3":
    bucket, name = _split(path)
    return _s3_client().get_object(Bucket=bucket, Key=name)["Body"].read()
  with FileSystems.open(path, compression_type="uncompressed") as f:
    return f.read()


def _split(path):
  bucket, _, name = path.split("://", 1)[1].partition("/")
  return bucket, name


def write_object(path, data):
  """Writes a small object in one request; it is visible only once complete."""
  bucket, name = _split(path)
  if scheme(path) == "gs":
    _gcs_client().bucket(bucket).blob(name).upload_from_string(data)
  else:
    _s3_client().put_object(Bucket=bucket, Key=name, Body=data)


def object_exists(path):
  bucket, name = _split(path)
  if scheme(path) == "gs":
    return _gcs_client().bucket(bucket).blob(name).exists()
  try:
    _s3_client().head_object(Bucket=bucket, Key=name)
  except Exception as e:  # pylint: disable=broad-except
    if classify(e)[0] == MISSING:
      return False
    raise
  return True


def delete_objects(paths):
  """Deletes objects: on gs:// one request each, in parallel; on s3:// a thousand a request. A
  missing one is no error."""
  gcs = [path for path in paths if scheme(path) == "gs"]
  if gcs:

    def delete(path):
      from google.api_core import exceptions  # pylint: disable=import-outside-toplevel
      bucket, name = _split(path)
      try:
        _gcs_client().bucket(bucket).delete_blob(name)
      except exceptions.NotFound:
        pass

    with concurrent.futures.ThreadPoolExecutor(_PARALLEL_DELETES) as pool:
      list(pool.map(delete, gcs))
  by_bucket = {}
  for path in paths:
    if scheme(path) == "s3":
      by_bucket.setdefault(_split(path)[0], []).append(_split(path)[1])
  for bucket, names in by_bucket.items():
    for start in range(0, len(names), 1000):
      response = _s3_client().delete_objects(
          Bucket=bucket,
          Delete={"Objects": [{"Key": name} for name in names[start:start + 1000]], "Quiet": True})
      if response.get("Errors"):
        error = response["Errors"][0]
        raise PermissionError(f"{error.get('Code')}: {error.get('Message')} ({error.get('Key')})")


def rename_object(source, destination):
  """Renames an object: a copy inside the store, then a delete of the source."""
  source_bucket, source_name = _split(source)
  bucket, name = _split(destination)
  if scheme(source) == "gs":
    client = _gcs_client()
    blob = client.bucket(source_bucket).blob(source_name)
    client.bucket(source_bucket).copy_blob(blob, client.bucket(bucket), name)
    blob.delete()
  else:
    client = _s3_client()
    client.copy_object(Bucket=bucket, Key=name,
                       CopySource={"Bucket": source_bucket, "Key": source_name})
    client.delete_object(Bucket=source_bucket, Key=source_name)


def _gcs_client():
  """This thread's GCS client, made the way Beam makes its own (its credentials, its options)."""
  if getattr(_state, "gcs", (None, None))[0] != _connected["generation"]:
    from apache_beam.io.gcp import gcsio  # pylint: disable=import-outside-toplevel
    _state.gcs = (_connected["generation"],
                  gcsio.create_storage_client(_connected["options"] or PipelineOptions([])))
  return _state.gcs[1]


def _s3_client():
  """This process's boto3 client, made by Beam from the S3 options (boto3's are thread-safe)."""
  if _connected["s3"] is None:
    from apache_beam.io.aws import s3io  # pylint: disable=import-outside-toplevel
    _connected["s3"] = s3io.S3IO(options=_connected["options"] or PipelineOptions([])).client.client
  return _connected["s3"]
