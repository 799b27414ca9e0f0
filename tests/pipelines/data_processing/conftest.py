"""Fixtures for the data pipeline: a local HTTP server that misbehaves on request."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image


@dataclass
class FileServer:
    """Serves ``payload`` at every path; ``mode`` picks how (tests flip it between runs).

    Modes: ``ok``; ``cut`` (announce the full length, send half, hang up -- an interrupted
    transfer); ``short`` (announce and send only half: a wrong Content-Length); ``html``
    (a 200 HTML page, as a login or quota page); ``missing`` (404).
    """

    url: str = ""
    payload: bytes = b""
    mode: str = "ok"
    ranges: bool = True  # honour "Range: bytes=N-" (what resuming needs)
    requests: list[dict[str, str]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server_state: FileServer

    def do_GET(self) -> None:
        state = self.server_state
        state.requests.append(dict(self.headers))
        data, mode = state.payload, state.mode
        if mode == "missing":
            self.send_error(404)
            return
        if mode == "html":
            data = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"
        start = 0
        wanted = self.headers.get("Range", "")
        if state.ranges and wanted.startswith("bytes=") and mode == "ok":
            start = int(wanted[len("bytes=") :].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        sent = body[: len(body) // 2] if mode in ("cut", "short") else body
        self.send_header("Content-Length", str(len(sent) if mode == "short" else len(body)))
        self.send_header("Content-Type", "text/html" if mode == "html" else "application/zip")
        self.end_headers()
        self.wfile.write(sent)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A :class:`FileServer` on 127.0.0.1 in a background thread."""
    state = FileServer()
    handler = type("Handler", (_Handler,), {"server_state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/dogs-vs-cats.zip"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _encoded(mode: str, fmt: str, seed: int) -> bytes:
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, channels), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode).save(
        buffer, format=fmt
    )
    return buffer.getvalue()


@pytest.fixture
def odd_images() -> dict[str, dict[str, bytes]]:
    """Inner-archive members for indices 16-18 of both classes: what real folders hold.

    ``good`` decode (grayscale, CMYK, PNG named .jpg); ``bad`` do not (empty, truncated,
    text). Combine with ``make_archive(indices=range(16), extra_members=...)``.
    """
    truncated = _encoded("RGB", "JPEG", 1)
    return {
        "good": {
            "train/cat.16.jpg": _encoded("L", "JPEG", 2),
            "train/dog.16.jpg": _encoded("CMYK", "JPEG", 3),
            "train/cat.17.jpg": _encoded("RGB", "PNG", 4),
        },
        "bad": {
            "train/dog.17.jpg": b"",
            "train/cat.18.jpg": truncated[: len(truncated) // 2],
            "train/dog.18.jpg": b"this is not an image",
        },
    }
