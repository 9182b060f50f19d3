"""A loopback Hugging Face Hub: the endpoints huggingface-hub and seachat pull/publish use.

Two servers on 127.0.0.1, like the real thing: the Hub (API + /resolve/, which answers LFS
files with a 302 carrying X-Repo-Commit, X-Linked-Etag, X-Linked-Size) and a separate "CDN"
origin serving the bytes with Range support. Because the CDN is another origin,
huggingface-hub's HEAD stops at the 302 (as it does in production) and httpx drops the
Authorization header when following the GET redirect (checked by the tests).

Faults are scripted per file: cut the connection after N body bytes, serve wrong bytes,
answer 503 a few times, ignore Range, throttle. Every body byte served is counted, so tests
can assert how much a resumed download fetched.

The upload side implements what HfApi.create_repo / create_commit need for small and LFS
files: repo creation, preupload (which files go through LFS), the LFS batch API with "basic"
transfer (a PUT to our CDN), and the NDJSON commit.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_THRESHOLD = 1024  # files at least this big are "LFS" (the real Hub: 10 MB or binary)


def is_lfs(name: str, size: int) -> bool:
    """Like the Hub: binary model files go through LFS, small text (README, JSON) does not."""
    return size >= LFS_THRESHOLD and not name.endswith((".md", ".json", ".txt"))


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Faults:
    cut_after: list[int] = field(default_factory=list)  # per GET, in order: close after N bytes
    status: list[int] = field(default_factory=list)  # per GET, in order: answer this status
    corrupt: bool = False  # flip bytes in the body (headers still announce the real sha256)
    ignore_range: bool = False
    throttle_bps: int | None = None  # bytes per second
    retry_after: str | None = None  # Retry-After header on fault statuses


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    commit: str = ""
    gated: bool = False
    commits: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.commit:
            self.recompute_commit()

    def recompute_commit(self) -> None:
        h = hashlib.sha1(self.repo_id.encode())
        for name in sorted(self.files):
            h.update(name.encode() + hashlib.sha256(self.files[name]).digest())
        self.commit = h.hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.faults: dict[str, Faults] = {}  # by file name in repo
        self.api_faults: list[int] = []  # statuses for the next model-info calls
        self.bytes_served: dict[str, int] = {}
        self.requests: list[dict] = []
        self.blobs: dict[str, bytes] = {}  # sha256 -> content (what the CDN serves)
        self.uploaded: dict[str, bytes] = {}  # sha256 -> bytes PUT through LFS
        self.validated: list[str] = []  # README.md contents sent to /api/validate-yaml
        self.lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "hub"))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "cdn"))
        for srv in (self._hub, self._cdn):
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], gated: bool = False) -> FakeRepo:
        repo = FakeRepo(repo_id, dict(files), gated=gated)
        self.repos[repo_id] = repo
        for data in files.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data
        return repo

    def replace_file(self, repo_id: str, name: str, data: bytes) -> None:
        repo = self.repos[repo_id]
        repo.files[name] = data
        self.blobs[hashlib.sha256(data).hexdigest()] = data
        repo.recompute_commit()

    def served(self, name: str) -> int:
        with self.lock:
            return self.bytes_served.get(name, 0)

    def close(self) -> None:
        for srv in (self._hub, self._cdn):
            srv.shutdown()
            srv.server_close()


def _handler(hub: FakeHub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        # ------------------------------------------------------------ helpers
        def _log(self, status: int) -> dict:
            entry = {
                "role": role,
                "method": self.command,
                "path": unquote(urlsplit(self.path).path),
                "range": self.headers.get("Range"),
                "auth": self.headers.get("Authorization"),
                "status": status,
                "sent": 0,  # body bytes, updated while a blob streams
            }
            with hub.lock:
                hub.requests.append(entry)
            return entry

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self._log(status)
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _json(self, status: int, obj: object, headers: dict | None = None) -> None:
            body = json.dumps(obj).encode()
            self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str, message: str) -> None:
            self._json(
                status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message}
            )

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        # ------------------------------------------------------------ routing
        def do_HEAD(self) -> None:
            self._route()

        def do_GET(self) -> None:
            self._route()

        def do_POST(self) -> None:
            self._route()

        def do_PUT(self) -> None:
            self._route()

        def _route(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            query = parse_qs(url.query)
            if role == "cdn":
                if path.startswith("/blobs/") and self.command in ("GET", "HEAD"):
                    return self._serve_blob(path[len("/blobs/") :], query)
                if path.startswith("/upload/") and self.command == "PUT":
                    return self._lfs_put(path[len("/upload/") :])
                return self._send(404)
            if path.startswith("/api/models/") and self.command == "GET":
                return self._model_info(path[len("/api/models/") :], query)
            if path == "/api/repos/create" and self.command == "POST":
                return self._create_repo()
            if path.startswith("/api/models/") and "/preupload/" in path:
                return self._preupload(path)
            if path.startswith("/api/models/") and "/commit/" in path:
                return self._commit(path)
            if path.endswith(".git/info/lfs/objects/batch"):
                return self._lfs_batch(path)
            if "/resolve/" in path and self.command in ("GET", "HEAD"):
                return self._resolve(path)
            if path == "/api/validate-yaml" and self.command == "POST":
                return self._validate_yaml()
            if path == "/api/whoami-v2":
                return self._json(200, {"name": "tester", "type": "user", "auth": {}})
            return self._send(404)

        # ------------------------------------------------------------ download side
        def _repo_and_rev(self, rest: str) -> tuple[FakeRepo | None, str]:
            repo_part, _, rev = rest.partition("/revision/")
            return hub.repos.get(repo_part), (rev or "main")

        def _model_info(self, rest: str, query: dict) -> None:
            repo, rev = self._repo_and_rev(rest)
            with hub.lock:
                fault = hub.api_faults.pop(0) if hub.api_faults else None
            if fault:
                return self._send(fault, b"busy", {"Retry-After": "0"})
            if repo is None:
                return self._error(401, "RepoNotFound", "Repository not found")
            if rev not in ("main", repo.commit):
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            blobs = "blobs" in query
            siblings = []
            for name, data in sorted(repo.files.items()):
                s: dict = {"rfilename": name}
                if blobs:
                    s["size"] = len(data)
                    s["blobId"] = git_blob_sha1(data)
                    if is_lfs(name, len(data)):
                        s["lfs"] = {
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "size": len(data),
                            "pointerSize": 134,
                        }
                siblings.append(s)
            self._json(
                200,
                {
                    "_id": "0" * 24,
                    "id": repo.repo_id,
                    "sha": repo.commit,
                    "private": False,
                    "gated": repo.gated,
                    "tags": ["gguf"],
                    "siblings": siblings,
                },
            )

        def _resolve(self, path: str) -> None:
            before, _, after = path.partition("/resolve/")
            repo = hub.repos.get(before.strip("/"))
            rev, _, name = after.partition("/")
            if repo is None:
                return self._error(401, "RepoNotFound", "Repository not found")
            if repo.gated and not self.headers.get("Authorization"):
                return self._error(401, "GatedRepo", "Access to this repo is restricted")
            if rev not in ("main", repo.commit):
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            data = repo.files.get(name)
            if data is None:
                return self._error(404, "EntryNotFound", "Entry not found")
            common = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
            if is_lfs(name, len(data)):
                sha = hashlib.sha256(data).hexdigest()
                location = f"{hub.cdn}/blobs/{sha}?name={quote(name)}"
                return self._send(
                    302,
                    b"",
                    {
                        **common,
                        "Location": location,
                        "ETag": f'"{git_blob_sha1(data)}"',
                        "X-Linked-Etag": f'"{sha}"',
                        "X-Linked-Size": str(len(data)),
                    },
                )
            # Small files are served by the Hub itself, with their git sha1 as ETag.
            self._send(200, data, {**common, "ETag": f'"{git_blob_sha1(data)}"'})

        def _serve_blob(self, sha: str, query: dict) -> None:
            data = hub.blobs.get(sha)
            name = (query.get("name") or [sha])[0]
            if data is None:
                return self._send(404)
            faults = hub.faults.get(name, Faults())
            if self.command == "GET":
                with hub.lock:
                    status = faults.status.pop(0) if faults.status else None
                    cut = faults.cut_after.pop(0) if faults.cut_after else None
            else:
                status = cut = None
            if status:
                extra = {"Retry-After": faults.retry_after} if faults.retry_after else {}
                return self._send(status, b"try later", extra)
            start = 0
            rng = self.headers.get("Range")
            partial = False
            if rng and not faults.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                partial = True
            body = data[start:]
            if faults.corrupt:
                body = bytes(b ^ 0x5A if i % 4096 == 17 else b for i, b in enumerate(body))
            entry = self._log(206 if partial else 200)
            self.send_response(206 if partial else 200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if self.command == "HEAD":
                return
            limit = len(body) if cut is None else min(cut, len(body))
            step = 64 * 1024
            sent = 0
            try:
                while sent < limit:
                    piece = body[sent : min(limit, sent + step)]
                    self.wfile.write(piece)
                    sent += len(piece)
                    with hub.lock:
                        hub.bytes_served[name] = hub.bytes_served.get(name, 0) + len(piece)
                        entry["sent"] += len(piece)
                    if faults.throttle_bps:
                        time.sleep(len(piece) / faults.throttle_bps)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            if cut is not None and cut < len(body):
                # Drop the link mid-body: the client sees fewer bytes than Content-Length.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

        # ------------------------------------------------------------ upload side
        def _validate_yaml(self) -> None:
            """The Hub parses the card's front matter before accepting a commit with it."""
            import re

            import yaml

            content = json.loads(self._body())["content"]
            m = re.match(r"^---\n(.*?)\n---\n", content, re.S)
            errors = []
            meta = yaml.safe_load(m.group(1)) if m else None
            if not isinstance(meta, dict):
                errors.append("no YAML metadata")
            else:
                for key in ("language", "tags"):
                    value = meta.get(key)
                    if value is not None and not (
                        isinstance(value, list) and all(isinstance(v, str) for v in value)
                    ):
                        errors.append(f'"{key}" must be a list of strings')
                if meta.get("base_model_relation") not in (
                    None,
                    "adapter",
                    "merge",
                    "quantized",
                    "finetune",
                ):
                    errors.append('"base_model_relation" is invalid')
            hub.validated.append(content)
            if errors:
                return self._json(400, {"errors": [{"message": e} for e in errors]})
            self._json(200, {"warnings": []})

        def _needs_token(self) -> bool:
            """Writes need a token, like on the Hub (which answers 401 without one)."""
            if self.headers.get("Authorization"):
                return False
            self._body()
            self._json(401, {"error": "Invalid username or password."})
            return True

        def _create_repo(self) -> None:
            if self._needs_token():
                return
            req = json.loads(self._body() or b"{}")
            org = req.get("organization")
            repo_id = f"{org}/{req['name']}" if org else f"tester/{req['name']}"
            if repo_id not in hub.repos:
                hub.add_repo(repo_id, {})
            self._json(200, {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})

        def _preupload(self, path: str) -> None:
            if self._needs_token():
                return
            req = json.loads(self._body() or b"{}")
            files = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if is_lfs(f["path"], f["size"]) else "regular",
                    "shouldIgnore": False,
                }
                for f in req.get("files", [])
            ]
            self._json(200, {"files": files, "commitOid": "0" * 40})

        def _lfs_batch(self, path: str) -> None:
            if self._needs_token():
                return
            req = json.loads(self._body() or b"{}")
            objects = []
            for obj in req.get("objects", []):
                oid = obj["oid"]
                entry: dict = {"oid": oid, "size": obj["size"], "authenticated": True}
                if oid not in hub.uploaded:
                    entry["actions"] = {"upload": {"href": f"{hub.cdn}/upload/{oid}", "header": {}}}
                objects.append(entry)
            self._json(
                200,
                {"transfer": "basic", "objects": objects},
                {"Content-Type": "application/vnd.git-lfs+json"},
            )

        def _lfs_put(self, oid: str) -> None:
            data = self._body()
            if hashlib.sha256(data).hexdigest() != oid:
                return self._send(400, b"sha256 mismatch")
            with hub.lock:
                hub.uploaded[oid] = data
            self._send(200)

        def _commit(self, path: str) -> None:
            if self._needs_token():
                return
            repo_id = path[len("/api/models/") :].split("/commit/")[0]
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            lines = [json.loads(line) for line in self._body().decode().splitlines() if line]
            summary = ""
            for item in lines:
                kind, value = item["key"], item["value"]
                if kind == "header":
                    summary = value.get("summary", "")
                elif kind == "file":
                    raw = value["content"]
                    data = base64.b64decode(raw) if value.get("encoding") == "base64" else raw
                    repo.files[value["path"]] = data
                elif kind == "lfsFile":
                    data = hub.uploaded.get(value["oid"])
                    if data is None:
                        return self._send(400, b"lfs object never uploaded")
                    repo.files[value["path"]] = data
                    hub.blobs[value["oid"]] = data
            repo.recompute_commit()
            repo.commits.append(
                {
                    "summary": summary,
                    "files": [i["value"].get("path") for i in lines if i["key"] != "header"],
                }
            )
            self._json(
                200,
                {
                    "success": True,
                    "commitOid": repo.commit,
                    "commitUrl": f"{hub.endpoint}/{repo_id}/commit/{repo.commit}",
                },
            )

    return Handler


class SilentServer:
    """Accepts TCP connections and never answers: what a dead proxy or captive portal does."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.held:
            c.close()


def closed_port_endpoint() -> str:
    """An address where nothing listens: connections are refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


class PortalServer:
    """Answers every request with a 200 web page: a hotel or airport captive portal."""

    def __init__(self) -> None:
        class Portal(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = b"<html><body>Please accept the terms to use the Wi-Fi</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
        self._srv.daemon_threads = True
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._srv.server_address[1]}"

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
