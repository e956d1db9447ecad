"""A small HTTP proxy in front of the S3 test server that fails and stalls chosen requests."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

Fault = str
"""`error500`, `slowdown503`, `hang` (no answer: the client times out), `slow` (late but OK)."""

_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
          b"<Message>injected by the test proxy</Message></Error>")
HANG_S = 1.5
SLOW_S = 0.3


class FaultyS3Proxy:
    """Forwards every request to `upstream`; `plan(method, path, n)` may inject a fault
    into the n-th request (0-based) that it is asked about."""

    def __init__(self, upstream: str, plan: Callable[[str, str, int], Fault | None]) -> None:
        self.upstream = urlsplit(upstream)
        self.plan = plan
        self.faults: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._calls = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                del format, args

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyS3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        """Read the request, maybe inject a fault, else forward it and relay the answer."""
        body = _read_body(request)
        path = unquote(request.path.split("?", 1)[0])
        with self._lock:
            self.seen[f"{request.command} {path}"] += 1
            fault = self.plan(request.command, path, self._calls)
            self._calls += 1
            if fault is not None:
                self.faults[fault] += 1
        if fault == "hang":
            time.sleep(HANG_S)
            request.close_connection = True
            return
        if fault in ("error500", "slowdown503"):
            code, status = ((b"InternalError", 500) if fault == "error500"
                            else (b"SlowDown", 503))
            payload = _ERROR.replace(b"{code}", code)
            request.send_response(status)
            request.send_header("Content-Type", "application/xml")
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            request.wfile.write(payload)
            return
        if fault == "slow":
            time.sleep(SLOW_S)
        self._forward(request, body)

    def _forward(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("transfer-encoding", "connection", "expect")}
        if body or request.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1",
                                              self.upstream.port, timeout=30)
        try:
            upstream.request(request.command, request.path, body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
            request.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    request.send_header(key, value)
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
        finally:
            upstream.close()


def _read_body(request: BaseHTTPRequestHandler) -> bytes:
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(request.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                request.rfile.readline()
                return b"".join(chunks)
            chunks.append(request.rfile.read(size))
            request.rfile.readline()
    length = int(request.headers.get("Content-Length") or 0)
    return request.rfile.read(length) if length else b""
