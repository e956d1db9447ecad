"""A local ServiceNow (Table and Attachment APIs) and webhook receiver for export tests.

A real HTTP server on a loopback port, in a thread. It answers as ServiceNow documents
it: `{"result": ...}` envelopes, 201 for a created attachment, 401/404 with
`{"error": {"message", "detail"}, "status": "failure"}`. The webhook receiver checks the
HMAC-SHA256 signature of the raw body, as a receiver should, and answers 401 when it does
not match. Faults can be queued per route:
a status (with headers, e.g. 429 + Retry-After), a delay past the client's timeout, or
a status sent *after* the change was made (the client cannot tell it succeeded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TABLE = "/api/now/table/incident"
ATTACHMENT = "/api/now/attachment"
UPLOAD = "/api/now/attachment/file"
HOOK = "/hook"


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or after) answering normally."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    after_commit: bool = False


@dataclass
class Seen:
    """One request the server received."""

    method: str
    route: str
    at: float
    headers: dict[str, str]
    body: bytes


class FakeServiceNow:
    """Incidents, attachments and work notes in memory, served over HTTP."""

    def __init__(self, *, username: str = "whylens", password: str = "s3cret",
                 token: str | None = None, hook_secret: str = "hook-secret",
                 signature_header: str = "X-Whylens-Signature") -> None:
        self.username = username
        self.password = password
        self.token = token
        self.hook_secret = hook_secret
        self.signature_header = signature_header
        self.incidents: dict[str, dict[str, Any]] = {}
        self.attachments: list[dict[str, Any]] = []
        self.hooks: list[bytes] = []
        self.seen: list[Seen] = []
        self.faults: defaultdict[tuple[str, str], deque[Fault]] = defaultdict(deque)
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeServiceNow:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add_incident(self, number: str) -> str:
        sys_id = uuid.uuid4().hex
        self.incidents[sys_id] = {"sys_id": sys_id, "number": number, "work_notes": []}
        return sys_id

    def fail(self, method: str, route: str, *faults: Fault) -> None:
        with self.lock:
            self.faults[(method, route)].extend(faults)

    def requests(self, method: str, route: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.method == method and s.route == route]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                server.handle(self, "GET")

            def do_POST(self) -> None:
                server.handle(self, "POST")

            def do_PATCH(self) -> None:
                server.handle(self, "PATCH")

        return Handler

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        route = self._route(method, parts.path)
        with self.lock:
            self.seen.append(Seen(method, route, time.monotonic(), dict(request.headers), body))
            queue = self.faults.get((method, route))
            fault = queue.popleft() if queue else None
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault is not None and not fault.after_commit and not fault.delay_s:
            self._send(request, fault.status, {"error": {"message": "injected",
                                                         "detail": "fault"},
                                               "status": "failure"}, fault.headers)
            return
        if route == HOOK and not self._signed(request, body):
            self._send(request, 401, {"error": {"message": "bad signature",
                                                "detail": self.signature_header},
                                      "status": "failure"})
            return
        if route != HOOK and not self._authorized(request):
            self._send(request, 401, {"error": {"message": "User Not Authenticated",
                                                "detail": "Required to provide Auth information"},
                                      "status": "failure"})
            return
        status, answer = self._serve(method, route, parts, body)
        if fault is not None and fault.after_commit:
            status, answer = fault.status, {"error": {"message": "injected after commit",
                                                      "detail": "fault"}, "status": "failure"}
        self._send(request, status, answer, fault.headers if fault else None)

    def _route(self, method: str, path: str) -> str:
        if path.startswith(TABLE + "/"):
            return TABLE + "/{sys_id}"
        return path

    def _signed(self, request: BaseHTTPRequestHandler, body: bytes) -> bool:
        expected = "sha256=" + hmac.new(self.hook_secret.encode(), body,
                                        hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, request.headers.get(self.signature_header) or "")

    def _authorized(self, request: BaseHTTPRequestHandler) -> bool:
        header = request.headers.get("Authorization") or ""
        if self.token is not None:
            return header == f"Bearer {self.token}"
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    def _serve(self, method: str, route: str, parts: Any,
               body: bytes) -> tuple[int, dict[str, Any]]:
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            if (method, route) == ("GET", TABLE):
                number = query.get("sysparm_query", "").removeprefix("number=")
                found = [{"sys_id": i["sys_id"], "number": i["number"]}
                         for i in self.incidents.values() if i["number"] == number]
                return 200, {"result": found}
            if (method, route) == ("PATCH", TABLE + "/{sys_id}"):
                sys_id = parts.path.rsplit("/", 1)[1]
                incident = self.incidents.get(sys_id)
                if incident is None:
                    return 404, {"error": {"message": "No Record found", "detail":
                                           "Record doesn't exist or ACL restricts the record "
                                           "retrieval"}, "status": "failure"}
                incident["work_notes"].append(json.loads(body)["work_notes"])
                return 200, {"result": {"sys_id": sys_id, "number": incident["number"]}}
            if (method, route) == ("GET", ATTACHMENT):
                terms = dict(term.split("=", 1) for term in
                             query.get("sysparm_query", "").split("^") if "=" in term)
                found = [self._meta(a) for a in self.attachments
                         if all(a.get(k) == v for k, v in terms.items())]
                return 200, {"result": found}
            if (method, route) == ("POST", UPLOAD):
                missing = [p for p in ("table_name", "table_sys_id", "file_name")
                           if not query.get(p)]
                if missing or query["table_sys_id"] not in self.incidents:
                    return 400, {"error": {"message": "Invalid parameters",
                                           "detail": ", ".join(missing)}, "status": "failure"}
                attachment = {"sys_id": uuid.uuid4().hex, "table_name": query["table_name"],
                              "table_sys_id": query["table_sys_id"],
                              "file_name": query["file_name"], "content": body}
                self.attachments.append(attachment)
                return 201, {"result": self._meta(attachment)}
            if (method, route) == ("POST", HOOK):
                self.hooks.append(body)
                return 200, {"ok": True}
        return 404, {"error": {"message": "Requested URI does not represent any resource",
                               "detail": None}, "status": "failure"}

    @staticmethod
    def _meta(attachment: dict[str, Any]) -> dict[str, Any]:
        return {"sys_id": attachment["sys_id"], "file_name": attachment["file_name"],
                "table_name": attachment["table_name"],
                "table_sys_id": attachment["table_sys_id"],
                "size_bytes": str(len(attachment["content"])),
                "content_type": "application/json"}

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout fault): nothing to answer.
            return
