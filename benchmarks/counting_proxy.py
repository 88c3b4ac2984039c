"""A counting HTTP proxy for the GCS JSON API: what `bench_object_store` measures a build's traffic with.

Every request is forwarded to the server and recorded with its kind (`request_kind`), status, range
and the bytes each way. Standard library only.
"""

import contextlib
import http.client
import http.server
import threading
import time
import urllib.parse

KINDS = ("read", "list", "metadata", "write", "delete_copy", "other")
# Headers that describe one hop of a connection, not the request; the proxy sets its own.
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
    "host", "content-length"
}


def request_kind(method, path, query):
  """What a GCS JSON API request does: one of KINDS."""
  if path.startswith("/upload/"):
    return "write"
  if method == "GET" and (path.startswith("/download/") or
                          "media" in urllib.parse.parse_qs(query).get("alt", ())):
    return "read"
  if (method == "DELETE" or path.startswith("/batch/") or "/copyTo/" in path or
      "/rewriteTo/" in path or path.endswith("/compose")):
    return "delete_copy"
  if method == "GET" and path.endswith("/o"):
    return "list"
  if method in ("GET", "PATCH"):
    return "metadata"
  return "other"


class CountingProxy(http.server.ThreadingHTTPServer):
  """Forwards HTTP to `target_url` and records every request: its kind and the bytes each way.

  The server names itself in the links it returns (an object's mediaLink, an upload's Location), so
  those are rewritten to the proxy's address, or the clients would go round it.
  """
  daemon_threads = True

  def __init__(self, target_url):
    super().__init__(("127.0.0.1", 0), _ProxyHandler)
    self.url = f"http://127.0.0.1:{self.server_port}"
    self.target_url = target_url
    self.requests = []
    self.lock = threading.Lock()
    self.started = time.perf_counter()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"  # keep-alive, as the storage clients expect
  # Headers and body leave in two writes: with Nagle's algorithm on, the client's delayed ACK holds
  # the body back ~40 ms, which made every request through the proxy 20 times slower.
  disable_nagle_algorithm = True

  def setup(self):
    super().setup()
    target = urllib.parse.urlsplit(self.server.target_url)
    # One connection to the server per client connection, as a client's own would be.
    self.upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=300)

  def finish(self):
    self.upstream.close()
    super().finish()

  def _forward(self):
    proxy = self.server
    start = time.perf_counter()
    if "chunked" in self.headers.get("Transfer-Encoding", "").lower():  # the storage clients don't
      self.send_error(411, "this proxy reads request bodies by their Content-Length")
      return
    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
    try:
      self.upstream.request(self.command, self.path, body or None, headers)
      response = self.upstream.getresponse()
      data = response.read()
    except OSError as e:
      self.upstream.close()
      self.send_error(502, str(e))
      return
    path, _, query = self.path.partition("?")
    kind = request_kind(self.command, path, query)
    received = len(data)
    if kind != "read":  # object data is passed on untouched
      data = data.replace(proxy.target_url.encode(), proxy.url.encode())
    self.send_response_only(response.status, response.reason)
    for name, value in response.getheaders():
      if name.lower() not in _HOP_BY_HOP:
        self.send_header(name, value.replace(proxy.target_url, proxy.url))
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)
    with proxy.lock:
      proxy.requests.append({
          "method": self.command, "path": path, "query": query, "kind": kind,
          "range": self.headers.get("Range"), "status": response.status, "sent": len(body),
          "received": received, "start": round(start - proxy.started,
                                               4), "seconds": round(time.perf_counter() - start, 4)
      })

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    """Quiet: thousands of requests; they are kept in `requests` instead."""


@contextlib.contextmanager
def counting_proxy(target_url):
  """A `CountingProxy` to `target_url`, serving on a thread; always shut down."""
  proxy = CountingProxy(target_url)
  thread = threading.Thread(target=proxy.serve_forever, daemon=True)
  thread.start()
  try:
    yield proxy
  finally:
    proxy.shutdown()
    proxy.server_close()
    thread.join()
