"""`seachat share` and `seachat pull --from`: real processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from tests.app.libtest import KHMER_NAME, spawn_seachat
from tests.app.share.conftest import KHMER_FILE, THAI_FILE

RESOLVE = "/seachat/library/resolve/main/"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def request(
    url: str, path: str, method: str = "GET", headers: dict | None = None
) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_share_prints_addresses_and_the_command_to_run(start_share, library):
    share = start_share()
    assert share.url.startswith("http://127.0.0.1:")
    command = next(x for x in share.stdout if x.startswith("on another laptop:"))
    assert f"seachat pull --from {share.url} " in command
    assert any(THAI_FILE in x for x in share.stdout) and any(KHMER_NAME in x for x in share.stdout)
    code, err = share.stop()
    assert code == 0 and "stopped sharing" in err


def test_pull_from_peer_interrupted_then_resumed(start_share, library, library_env, tmp_path):
    share = start_share("--limit-rate", "4M")  # 24 MiB take ~6 s: time to interrupt mid-file
    env = {**library_env, "SEACHAT_MODELS_DIR": str(tmp_path / "other-laptop")}
    part = tmp_path / "other-laptop" / (THAI_FILE + ".part")
    first = subprocess.Popen(
        [sys.executable, "-m", "seachat.app", "pull", "--from", share.url, THAI_FILE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 6 << 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert part.exists() and not (tmp_path / "other-laptop" / THAI_FILE).exists()

    second = subprocess.run(
        [sys.executable, "-m", "seachat.app", "pull", "--from", share.url, THAI_FILE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    landed = tmp_path / "other-laptop" / THAI_FILE
    assert sha(landed) == sha(library / THAI_FILE)
    share.stop()
    assert share.bytes_sent(THAI_FILE) <= 1.2 * landed.stat().st_size


def test_two_clients_at_once_by_model_name(start_share, library, library_env, tmp_path):
    share = start_share()
    procs = []
    for n in (1, 2):
        env = {**library_env, "SEACHAT_MODELS_DIR": str(tmp_path / f"laptop{n}")}
        procs.append(spawn_seachat(env, "pull", "--from", share.url, KHMER_NAME))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    for n in (1, 2):
        assert sha(tmp_path / f"laptop{n}" / KHMER_FILE) == sha(library / KHMER_FILE)


def _timed_download(url: str, results: list[float]) -> None:
    t0 = time.monotonic()
    status, body = request(url, RESOLVE + quote(KHMER_FILE))
    assert status == 200 and len(body) >= 2 << 20
    results.append(time.monotonic() - t0)


def test_limit_rate_holds_for_all_clients_together(start_share, library):
    share = start_share("--limit-rate", "1M")
    times: list[float] = []
    _timed_download(share.url, times)  # one client: 2 MiB at 1 MiB/s
    threads = [threading.Thread(target=_timed_download, args=(share.url, times)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone, together = times[0], max(times[1:])
    assert 2 / 1.2 <= alone <= 2 / 0.8, alone
    assert 4 / 1.2 <= together <= 4 / 0.8, together  # 4 MiB shared one 1 MiB/s budget


def test_token_is_required_on_every_request(start_share, library, library_env, tmp_path):
    share = start_share("--token", "s3cret-ไทย".encode().hex())
    token = "s3cret-ไทย".encode().hex()
    for path in ("/api/models/seachat/library", RESOLVE + quote(KHMER_FILE), "/api/seachat/share"):
        assert request(share.url, path)[0] == 401
        assert request(share.url, path, headers={"Authorization": "Bearer wrong"})[0] == 401
    status, body = request(
        share.url, RESOLVE + quote(KHMER_FILE), headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200 and hashlib.sha256(body).hexdigest() == sha(library / KHMER_FILE)
    env = {**library_env, "SEACHAT_MODELS_DIR": str(tmp_path / "other")}
    refused = subprocess.run(
        [sys.executable, "-m", "seachat.app", "pull", "--from", share.url, KHMER_FILE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "--token" in refused.stderr
    assert len([x for x in refused.stderr.splitlines() if x.startswith("seachat: error:")]) == 1
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "seachat.app",
            "pull",
            "--from",
            share.url,
            "--token",
            token,
            KHMER_FILE,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr


def test_nothing_outside_the_library_is_served(start_share, library, tmp_path):
    secret = tmp_path / "secret.gguf"
    secret.write_bytes(b"GGUF" + b"private" * 1000)
    (library / "outside.gguf").symlink_to(secret)
    (library / "half.gguf.part").write_bytes(b"partial")
    share = start_share()
    assert not any("outside.gguf" in line for line in share.stdout)
    attempts = [
        RESOLVE + "../../../secret.gguf",
        RESOLVE + "%2e%2e/%2e%2e/secret.gguf",
        RESOLVE + "..%2f..%2fsecret.gguf",
        RESOLVE + quote(str(secret), safe=""),
        RESOLVE + str(secret),
        RESOLVE + "outside.gguf",
        RESOLVE + "half.gguf.part",
        "/" + str(secret),
        "/etc/passwd",
        "//etc/passwd",
    ]
    for path in attempts:
        status, body = request(share.url, path)
        assert status == 404, path
        assert b"private" not in body and b"root:" not in body


def test_malformed_and_oversized_requests_are_refused(start_share, library):
    share = start_share()
    url = RESOLVE + quote(KHMER_FILE)
    assert request(share.url, url, headers={"Range": "bytes=zz-"})[0] == 416
    assert request(share.url, url, headers={"Range": f"bytes={10 << 20}-"})[0] == 416
    status, body = request(share.url, url, headers={"Range": "bytes=4-7"})
    assert status == 206 and body == (library / KHMER_FILE).read_bytes()[4:8]
    assert request(share.url, "/" + "a" * 5000)[0] == 414
    assert request(share.url, url, method="POST")[0] == 405
    assert request(share.url, url, method="DELETE")[0] == 405
    parts = urlsplit(share.url)

    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1 extra words\r\n\r\n")
        assert b"400" in sock.recv(4096)  # answered Bad Request, not crashed
    assert request(share.url, url)[0] == 200  # and still serving


def test_models_from_peer_lists_what_it_offers(start_share, library, seachat):
    share = start_share(KHMER_NAME)  # only the model named
    result = seachat("models", "--from", share.url)
    assert result.returncode == 0, result.stderr
    assert KHMER_NAME in result.stdout and KHMER_FILE in result.stdout
    assert THAI_FILE not in result.stdout
