"""Helpers for the dataset-fetcher tests: tiny audio files and a local HTTP server with Range support.

The server runs on 127.0.0.1 in a thread (ThreadingHTTPServer). It serves files from a
directory, honours ``Range: bytes=N-`` with 206 responses, records every request's Range
header, and can be told to drop the connection halfway through the first N responses
(announcing the full Content-Length, then closing after half of the bytes).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


def write_tone(path: Path, seconds: float = 1.5, sr: int = 8000, freq: float = 440.0, fmt: str | None = None,
               subtype: str | None = "PCM_16", channels: int = 1) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels > 1:
        y = np.stack([y] * channels, axis=1)
    sf.write(path, y, sr, format=fmt, subtype=subtype)
    return path


def write_corrupt(path: Path, n: int = 4000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@dataclass
class ServerState:
    root: Path
    drop_first: int = 0          # drop the connection halfway for this many responses
    stall_s: float = 0.0         # sleep before sending the body (to trigger timeouts)
    range_support: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: ServerState):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # keep test output quiet
            pass

        def do_GET(self):  # noqa: N802
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, rng))
                drop = state.drop_first > 0
                if drop:
                    state.drop_first -= 1
            f = state.root / self.path.lstrip("/").split("?")[0]
            if not f.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = f.read_bytes()
            start = 0
            if rng and state.range_support and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.stall_s:
                time.sleep(state.stall_s)
            if drop:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return H


@contextlib.contextmanager
def serve(root: Path, **kw):
    """Serve ``root`` on 127.0.0.1; yields (base_url, state)."""
    state = ServerState(root=root, **kw)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
