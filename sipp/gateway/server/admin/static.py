"""The dashboard's single-page app: files shipped in ``static/`` (no build step)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["StaticFiles"]

_ROOT = Path(__file__).with_name("static")
_TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
          ".css": b"text/css; charset=utf-8", ".svg": b"image/svg+xml",
          ".png": b"image/png", ".ico": b"image/x-icon", ".json": b"application/json"}
_CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'")
_BASE_MARKER = b'<base href="/">'


class StaticFiles:
    """``lookup(path)``: a file under ``assets/`` (404 when missing), else ``index.html``
    with ``<base href>`` set to the admin route (the app routes on the client)."""

    def __init__(self, base_href: str, root: Path = _ROOT) -> None:
        self._assets: dict[str, tuple[bytes, bytes]] = {}
        for path in sorted((root / "assets").rglob("*")):
            if path.is_file():
                content_type = _TYPES.get(path.suffix, b"application/octet-stream")
                self._assets[path.relative_to(root).as_posix()] = (path.read_bytes(),
                                                                   content_type)
        index = (root / "index.html").read_bytes()
        if _BASE_MARKER not in index:
            raise RuntimeError("admin index.html lacks its <base href> marker")
        self._index = index.replace(_BASE_MARKER,
                                    b'<base href="' + base_href.encode() + b'">')

    def lookup(self, path: str) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None:
        if path.startswith("assets/"):
            found = self._assets.get(path)
            if found is None:
                return None
            return found[0], found[1], []
        return self._index, _TYPES[".html"], [(b"content-security-policy", _CSP)]
