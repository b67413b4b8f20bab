"""A Confluent-compatible Schema Registry's REST API, the little of it the kit calls
(``GET /schemas/ids/{id}``, ``/subjects``, ``/subjects/{s}/versions[/{v}]``), served over real
HTTP on 127.0.0.1 so that confluent-kafka's client (httpx) is driven as against a real one.
``fail_next`` answers that many requests with 503 (a registry that is down); every request's
Authorization header is kept."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeRegistry:
    url: str = ""
    schemas: dict[int, str] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject -> ids by version
    fail_next: int = 0
    requests: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    def add(self, subject: str, schema: dict[str, Any]) -> int:
        schema_id = max(self.schemas, default=0) + 1
        self.schemas[schema_id] = json.dumps(schema)
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def answer(self, path: str) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["schemas", "ids"] and len(parts) == 3 and parts[2].isdigit():
            text = self.schemas.get(int(parts[2]))
            if text is None:
                return 404, {"error_code": 40403, "message": "Schema not found"}
            return 200, {"schema": text}
        if parts == ["subjects"]:
            return 200, sorted(self.subjects)
        if parts[0] == "subjects" and len(parts) >= 3 and parts[2] == "versions":
            ids = self.subjects.get(parts[1])
            if ids is None:
                return 404, {"error_code": 40401, "message": "Subject not found"}
            if len(parts) == 3:
                return 200, list(range(1, len(ids) + 1))
            version = len(ids) if parts[3] == "latest" else int(parts[3])
            schema_id = ids[version - 1]
            return 200, {
                "subject": parts[1],
                "version": version,
                "id": schema_id,
                "schema": self.schemas[schema_id],
            }
        return 404, {"error_code": 404, "message": "not found"}


@contextmanager
def serve(registry: FakeRegistry) -> Iterator[FakeRegistry]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            registry.requests.append(self.path)
            registry.authorizations.append(self.headers.get("Authorization"))
            if registry.fail_next > 0:
                registry.fail_next -= 1
                status, body = 503, {"error_code": 50301, "message": "unavailable"}
            else:
                status, body = registry.answer(self.path.split("?", 1)[0])
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    registry.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
