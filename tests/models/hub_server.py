"""A local HTTP server speaking the parts of the Hugging Face hub protocol that
huggingface_hub's downloads use, plus plain file URLs, for download tests.

* ``HEAD|GET /{org}/{repo}/resolve/{revision}/{path}``: ``X-Repo-Commit``, ``ETag`` (the
  sha256, as for LFS files), ``Content-Length``; ``Range`` requests answer 206;
* ``GET /api/models/{org}/{repo}[/revision/{revision}]``: ``{"id", "sha", "siblings"}``;
* ``GET|HEAD /files/{name}``: a plain file with ``Range`` support.

``drop_after[path] = n`` makes the next GET of ``path`` send ``n`` body bytes and close the
connection (an interrupted download); ``delay_s`` slows every body chunk (to make two
clients overlap). Every request is recorded in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    revisions: dict[str, str] = field(default_factory=dict)  # name -> commit


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    sent: int = 0


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.files: dict[str, bytes] = {}
        self.requests: list[Seen] = []
        self.drop_after: dict[str, int] = {}
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def gets(self, suffix: str = "") -> list[Seen]:
        """Recorded GETs of file bodies whose path ends with ``suffix``."""
        return [r for r in self.requests if r.method == "GET" and "/api/" not in r.path
                and r.path.endswith(suffix)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> Seen:
                seen = Seen(self.command, unquote(urlsplit(self.path).path),
                            self.headers.get("Range"))
                with hub._lock:
                    hub.requests.append(seen)
                return seen

            def _missing(self, message: str = "not found") -> None:
                body = json.dumps({"error": message}).encode()
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                codes = {"repo": "RepoNotFound", "revision": "RevisionNotFound"}
                self.send_header("X-Error-Code", codes.get(message, "EntryNotFound"))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, value: Any) -> None:
                body = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _file(self, seen: Seen, data: bytes, extra: dict[str, str]) -> None:
                etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    first = rng[len("bytes="):].split("-", 1)[0]
                    start = int(first or 0)
                if start >= len(data) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if self.command == "HEAD":
                    return
                with hub._lock:
                    cut = hub.drop_after.pop(seen.path, None)
                limit = len(body) if cut is None else min(cut, len(body))
                step = 16384
                for offset in range(0, limit, step):
                    chunk = body[offset:min(offset + step, limit)]
                    self.wfile.write(chunk)
                    seen.sent += len(chunk)
                    if hub.delay_s:
                        self.wfile.flush()
                        time.sleep(hub.delay_s)
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)

            def _route(self) -> None:
                seen = self._record()
                parts = seen.path.strip("/").split("/")
                if parts[:1] == ["files"] and len(parts) == 2:
                    data = hub.files.get(parts[1])
                    return self._missing() if data is None else self._file(seen, data, {})
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo = hub.repos.get(f"{parts[2]}/{parts[3]}")
                    if repo is None:
                        return self._missing("repo")
                    rev = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
                    commit = repo.revisions.get(rev, repo.commit if rev in ("main", repo.commit)
                                                else None)
                    if commit is None:
                        return self._missing("revision")
                    return self._json({
                        "id": f"{parts[2]}/{parts[3]}", "modelId": f"{parts[2]}/{parts[3]}",
                        "sha": commit,
                        "siblings": [{"rfilename": name} for name in sorted(repo.files)],
                    })
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = hub.repos.get(f"{parts[0]}/{parts[1]}")
                    if repo is None:
                        return self._missing("repo")
                    rev = parts[3]
                    commit = repo.revisions.get(rev, repo.commit if rev in ("main", repo.commit)
                                                else None)
                    name = "/".join(parts[4:])
                    data = repo.files.get(name)
                    if commit is None or data is None:
                        return self._missing()
                    etag = hashlib.sha256(data).hexdigest()
                    return self._file(seen, data, {
                        "X-Repo-Commit": commit, "X-Linked-Etag": f'"{etag}"',
                        "X-Linked-Size": str(len(data)),
                    })
                return self._missing()

            do_GET = _route
            do_HEAD = _route

        return Handler


def main(argv: list[str] | None = None) -> int:
    """``python hub_server.py ORG/REPO FILE=PATH ...``: serve files as one hub repo; prints
    the endpoint URL, then serves until killed (used by scripts/check_wheels.sh)."""
    import argparse
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("repo")
    parser.add_argument("files", nargs="+", metavar="FILE=PATH")
    args = parser.parse_args(argv)
    server = HubServer()
    server.repos[args.repo] = Repo({
        name: Path(path).read_bytes()
        for name, _, path in (item.partition("=") for item in args.files)
    })
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    server.close()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
