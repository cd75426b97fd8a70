"""A real HTTP server that speaks the OpenAI streaming chat protocol, scripted per test.

It listens on a free loopback port in a thread (the standard library's threading HTTP server)
and answers ``POST /v1/chat/completions`` with chunked server-sent events, like OpenAI, vLLM,
Ollama or llama.cpp do. Each request takes the next :class:`Script` from a queue (the last one
repeats), so a test can say "first a 503, then a good stream".
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Script:
    """One answer: an error status with a body, or a stream of ``pieces``."""

    status: int = 200
    pieces: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    # Seconds before each piece (the model's pace) and before the headers.
    piece_delay: float = 0.0
    first_byte_delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str = "scripted error"
    # Send usage in a final chunk (include_usage) or leave the client to estimate.
    usage: bool = True
    # Cut the connection after this many pieces, without [DONE] (a dropped stream).
    cut_after: int | None = None


class OpenAIServer:
    def __init__(self) -> None:
        self.scripts: list[Script] = [Script()]
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                script = server._next(body, self.headers.get("Authorization"))
                time.sleep(script.first_byte_delay)
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                elif script.status != 200:
                    self._json(script.status, {"error": {"message": script.error_message}}, script)
                else:
                    self._stream(body, script)

            def _json(self, status: int, payload: Any, script: Script | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (script.headers if script else {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _event(self, payload: Any) -> None:
                text = payload if isinstance(payload, str) else json.dumps(payload)
                self._chunk(f"data: {text}\n\n".encode())

            def _stream(self, body: dict[str, Any], script: Script) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                model = body.get("model", "test-model")
                self._chunk(b": keep-alive\n\n")
                try:
                    for index, piece in enumerate(script.pieces):
                        if script.cut_after is not None and index >= script.cut_after:
                            self.wfile.write(b"0\r\n\r\n")
                            self.close_connection = True
                            return
                        time.sleep(script.piece_delay)
                        self._event({"model": model, "choices": [{"delta": {"content": piece}}]})
                    self._event(
                        {"model": model, "choices": [{"delta": {}, "finish_reason": "stop"}]}
                    )
                    if script.usage:
                        self._event(
                            {
                                "model": model,
                                "choices": [],
                                "usage": {"prompt_tokens": 11, "completion_tokens": 7},
                            }
                        )
                    self._event("[DONE]")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _next(self, body: dict[str, Any], auth: str | None) -> Script:
        with self._lock:
            self.requests.append(body)
            self.auth_headers.append(auth)
            return self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
