"""`seachat share`: the library over HTTP, read-only, in the dialect `seachat pull` speaks.

A peer looks like a one-repository Hugging Face Hub: the model-info API lists the offered
files with their sizes and sha256, and `/resolve/` serves them with Range requests. So pulling
from a peer reuses the whole Hub download path — part file, checkpoint, resume, sha256 before
the rename, retries — instead of a second, weaker one.

Safety: GET and HEAD only; the requested name is looked up in the offer (never joined to a
folder), so `..`, `%2e%2e`, `%2f` and absolute paths find nothing; no request body is read;
long request lines are refused by http.server itself (414) and URLs above MAX_URL are too.
`--token` is compared in constant time on every request. `--limit-rate` is one budget for all
clients together: each chunk reserves its slot on a shared clock before it is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from seachat.app.share.offer import OfferedFile
from seachat.convert.errors import UserError

SHARE_REPO = "seachat/library"  # the one repository a peer serves
INDEX_PATH = "/api/seachat/share"  # model names → files, for `pull --from URL NAME`
MAX_URL = 4096
CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)([KMG]?)(?:i?B?)?(?:/s)?$", re.IGNORECASE)


def parse_rate(text: str) -> int:
    """'5M' → 5 MiB/s, '800K' → 800 KiB/s, '1000' → 1000 B/s (curl's --limit-rate units)."""
    m = _RATE.match(text.strip())
    if not m or float(m[1]) <= 0:
        raise UserError(f"--limit-rate {text!r}: write a rate such as 800K, 5M or 1G (bytes/s)")
    scale = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m[2].upper()]
    return max(1, int(float(m[1]) * scale))


class RateLimit:
    """One bytes-per-second budget shared by every connection (None: unlimited)."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._next_free = time.monotonic()
        self._lock = threading.Lock()

    @property
    def chunk(self) -> int:
        return CHUNK if self.rate is None else max(1024, min(CHUNK, self.rate // 20))

    def wait(self, n: int) -> None:
        if self.rate is None:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_free)
            self._next_free = start + n / self.rate
        if start > now:
            time.sleep(start - now)


@dataclass
class ShareConfig:
    offer: dict[str, OfferedFile]
    token: str | None = None
    limit: RateLimit | None = None
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)

    @property
    def commit(self) -> str:
        """A stable 40-hex revision id: changes whenever the offered files do."""
        listing = "\n".join(f"{f.name} {f.size} {f.sha256}" for f in self.offer.values())
        return hashlib.sha1(listing.encode()).hexdigest()


def listing_json(config: ShareConfig) -> dict:
    siblings = [
        {
            "rfilename": f.name,
            "size": f.size,
            "lfs": {"sha256": f.sha256, "size": f.size, "pointerSize": 134},
        }
        for f in config.offer.values()
    ]
    return {"id": SHARE_REPO, "sha": config.commit, "private": False, "siblings": siblings}


def index_json(config: ShareConfig) -> dict:
    return {
        "repo": SHARE_REPO,
        "models": [
            {"name": f.model, "file": f.name, "size": f.size} for f in config.offer.values()
        ],
    }


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range; None if the header is absent.

    Raises ValueError for a range that cannot be served (answered 416)."""
    if header is None:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m[1] and not m[2]):
        raise ValueError(header)
    if not m[1]:  # bytes=-N: the last N bytes
        first, last = max(0, size - int(m[2])), size - 1
    else:
        first = int(m[1])
        last = min(int(m[2]), size - 1) if m[2] else size - 1
    if first >= size or last < first:
        raise ValueError(header)
    return first, last


class ShareHandler(BaseHTTPRequestHandler):
    """One request: the listing, the index or a file, from `config` (set per server)."""

    config: ShareConfig
    protocol_version = "HTTP/1.1"
    server_version = "seachat-share"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """http.server's own log lines (malformed requests) go to the same log."""
        self.config.log(f"{self.client_address[0]} {format % args}")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Served requests are logged once, with the bytes sent, by the handlers."""

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def _refuse_method(self) -> None:
        self.close_connection = True
        self._send_error(
            405, "MethodNotAllowed", "seachat share is read-only", {"Allow": "GET, HEAD"}
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method

    def _route(self) -> None:
        if self.headers.get("Content-Length", "0") not in ("", "0"):
            self.close_connection = True  # a body we will not read: do not reuse the link
        if len(self.path) > MAX_URL:
            return self._send_error(414, "URITooLong", "request line too long")
        if self.config.token and not self._authorized():
            return self._send_error(401, "TokenRequired", "this share needs --token")
        path = unquote(urlsplit(self.path).path)
        api = f"/api/models/{SHARE_REPO}"
        if path == INDEX_PATH:
            return self._send_json(index_json(self.config))
        if path == api or path.startswith(api + "/revision/"):
            return self._listing(path.removeprefix(api).removeprefix("/revision/"))
        resolve = f"/{SHARE_REPO}/resolve/"
        if path.startswith(resolve):
            revision, _, name = path[len(resolve) :].partition("/")
            return self._file(revision, name)
        self._send_error(404, "RepoNotFound", "not found")

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), self.config.token.encode())  # type: ignore[union-attr]

    def _revision_ok(self, revision: str) -> bool:
        if revision in ("", "main", self.config.commit):
            return True
        self._send_error(404, "RevisionNotFound", f"no revision {revision!r}")
        return False

    def _listing(self, revision: str) -> None:
        if self._revision_ok(revision):
            self._send_json(listing_json(self.config))

    def _file(self, revision: str, name: str) -> None:
        if not self._revision_ok(revision):
            return
        offered = self.config.offer.get(name)
        if offered is None:
            return self._send_error(404, "EntryNotFound", "no such file in this share")
        try:
            span = parse_range(self.headers.get("Range"), offered.size)
        except ValueError:
            return self._send_error(
                416,
                "RangeNotSatisfiable",
                "bad Range",
                {"Content-Range": f"bytes */{offered.size}"},
            )
        first, last = span or (0, offered.size - 1)
        self.send_response(206 if span else 200)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(last - first + 1),
            "Accept-Ranges": "bytes",
            "ETag": f'"{offered.sha256}"',
            "X-Linked-Etag": f'"{offered.sha256}"',
            "X-Linked-Size": str(offered.size),
            "X-Repo-Commit": self.config.commit,
        }
        if span:
            headers["Content-Range"] = f"bytes {first}-{last}/{offered.size}"
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        sent = 0 if self.command == "HEAD" else self._stream(offered, first, last)
        status = 206 if span else 200
        self.config.log(
            f"{self.client_address[0]} {self.command} {name} {status} sent {sent} bytes"
        )

    def _stream(self, offered: OfferedFile, first: int, last: int) -> int:
        limit = self.config.limit or RateLimit(None)
        sent = 0
        try:
            with offered.path.open("rb") as f:
                f.seek(first)
                remaining = last - first + 1
                while remaining > 0:
                    block = f.read(min(limit.chunk, remaining))
                    if not block:
                        break  # the file shrank under us; the client sees a short body
                    limit.wait(len(block))
                    self.wfile.write(block)
                    sent += len(block)
                    remaining -= len(block)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; it will resume
        return sent

    def _send_json(self, obj: object) -> None:
        body = json.dumps(obj, ensure_ascii=False).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    def _send_error(self, status: int, code: str, message: str, extra: dict | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Error-Code": code,
            "X-Error-Message": message,
        }
        self._send(status, body, {**headers, **(extra or {})})
        self.config.log(f"{self.client_address[0]} {self.command} {self.path[:200]} {status}")

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def make_server(config: ShareConfig, host: str, port: int) -> ThreadingHTTPServer:
    try:
        handler = type("BoundShareHandler", (ShareHandler,), {"config": config})
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror}); try another --port"
        ) from exc
    server.daemon_threads = True
    return server


def addresses(host: str, port: int) -> list[str]:
    """Every URL the server can be reached at: all IPv4 interfaces when bound to 0.0.0.0."""
    if host not in ("0.0.0.0", ""):
        return [f"http://{host}:{port}"]
    import psutil

    found = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family.name == "AF_INET":
                found.append(f"http://{addr.address}:{port}")
    return sorted(set(found), key=lambda url: url.startswith("http://127."))
