"""The resumable download engine in-process, where a test can play the part of a crash:
bytes written after the last checkpoint, a damaged block on disk, a partial with no record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import filelock
import pytest

from seachat.app.hub import download as hub_download
from seachat.app.hub.pull import quiet_hub
from tests.app.fakehub import FakeHub, Faults
from tests.app.libtest import write_gguf

REPO = "sea-org/engine-GGUF"
NAME = "engine-Q4_K_M.gguf"
BLOCK = 256 * 1024


@pytest.fixture
def content(tmp_path: Path) -> bytes:
    return write_gguf(tmp_path / "src.gguf", n_bytes=(2 << 20) + 777, seed=11).read_bytes()


@pytest.fixture
def remote(fake_hub: FakeHub, content: bytes) -> hub_download.RemoteFile:
    quiet_hub()
    fake_hub.add_repo(REPO, {NAME: content, "notes.txt": "ภาษาไทย ខ្មែរ\n".encode()})
    return hub_download.resolve_remote_file(REPO, NAME, "main", endpoint=fake_hub.endpoint)


def get(remote: hub_download.RemoteFile, final: Path, **kw) -> hub_download.DownloadResult:
    kw.setdefault("block_size", BLOCK)
    kw.setdefault("base_wait", 0.05)
    return hub_download.download(remote, final, **kw)


def interrupted_partial(
    fake_hub: FakeHub, remote: hub_download.RemoteFile, final: Path, cut: int
) -> dict:
    fake_hub.faults[NAME] = Faults(cut_after=[cut])
    with pytest.raises(hub_download.DownloadError, match="resume"):
        get(remote, final, retries=0)
    fake_hub.faults[NAME] = Faults()
    return json.loads(hub_download.state_path(final).read_text())


def test_metadata_comes_from_the_hub_headers(remote: hub_download.RemoteFile, content: bytes):
    assert remote.sha256 == hashlib.sha256(content).hexdigest()  # X-Linked-Etag
    assert remote.size == len(content)  # X-Linked-Size
    assert remote.commit and len(remote.commit) == 40  # X-Repo-Commit
    assert f"/resolve/{remote.commit}/" in remote.url  # pinned: later commits can't mix in


def test_checkpoint_records_block_hashes(fake_hub, remote, content, tmp_path):
    final = tmp_path / "lib" / NAME
    state = interrupted_partial(fake_hub, remote, final, cut=900_000)
    cp = state["checkpoint"]
    assert cp["size"] == 900_000
    assert cp["blocks"] == [
        hashlib.sha256(content[i * BLOCK : (i + 1) * BLOCK]).hexdigest() for i in range(3)
    ]
    assert cp["tail_sha256"] == hashlib.sha256(content[3 * BLOCK : 900_000]).hexdigest()
    assert state["sha256"] == remote.sha256 and state["repo_id"] == REPO


def test_bytes_after_the_checkpoint_are_dropped_after_a_crash(fake_hub, remote, content, tmp_path):
    """A hard crash (power cut) can leave unflushed garbage past the checkpoint: it is cut off
    and re-fetched, the verified prefix is kept."""
    final = tmp_path / "lib" / NAME
    interrupted_partial(fake_hub, remote, final, cut=900_000)
    with open(hub_download.part_path(final), "ab") as f:
        f.write(b"\0" * 50_000)  # what a file can hold after a power cut
    served = fake_hub.served(NAME)
    result = get(remote, final)
    assert result.resumed_from == 900_000
    assert result.fetched == len(content) - 900_000
    assert fake_hub.served(NAME) - served == len(content) - 900_000
    assert any("did not stop cleanly" in n for n in result.notes)
    assert final.read_bytes() == content


def test_a_damaged_block_keeps_only_the_good_prefix(fake_hub, remote, content, tmp_path):
    final = tmp_path / "lib" / NAME
    interrupted_partial(fake_hub, remote, final, cut=900_000)
    part = hub_download.part_path(final)
    data = bytearray(part.read_bytes())
    data[BLOCK + 10] ^= 0xFF  # block 1 rots on disk
    part.write_bytes(bytes(data))
    result = get(remote, final)
    assert result.resumed_from == BLOCK
    assert result.fetched == len(content) - BLOCK
    assert final.read_bytes() == content


def test_a_partial_without_its_record_is_not_trusted(fake_hub, remote, content, tmp_path):
    final = tmp_path / "lib" / NAME
    final.parent.mkdir()
    hub_download.part_path(final).write_bytes(content[:500_000])
    result = get(remote, final)
    assert result.resumed_from == 0 and result.fetched == len(content)
    assert final.read_bytes() == content


def test_small_git_files_are_checked_by_git_blob_sha1(fake_hub, remote, tmp_path):
    """Non-LFS files have no sha256 on the Hub, only their git blob id as ETag."""
    small = hub_download.resolve_remote_file(REPO, "notes.txt", "main", endpoint=fake_hub.endpoint)
    assert small.sha256 is None and small.etag and len(small.etag) == 40
    final = tmp_path / "lib" / "notes.txt"
    get(small, final)
    assert final.read_text(encoding="utf-8") == "ภาษาไทย ខ្មែរ\n"


def test_two_pulls_of_one_file_do_not_share_the_partial(remote, tmp_path):
    final = tmp_path / "lib" / NAME
    final.parent.mkdir()
    with (
        filelock.FileLock(str(hub_download.lock_path(final))),
        pytest.raises(hub_download.DownloadError, match="another seachat pull"),
    ):
        get(remote, final)
    assert not final.exists()


def test_not_enough_disk_space_is_said_before_downloading(remote, tmp_path, monkeypatch, fake_hub):
    import shutil

    final = tmp_path / "lib" / NAME
    real = shutil.disk_usage

    def tiny_disk(path):
        return real(path)._replace(free=1000)

    monkeypatch.setattr(hub_download.shutil, "disk_usage", tiny_disk)
    with pytest.raises(hub_download.DownloadError, match="not enough free disk space"):
        get(remote, final)
    assert fake_hub.served(NAME) == 0


class _CtrlCAfter:
    """A progress line whose user presses Ctrl-C once `limit` bytes have arrived."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen, self.closed = limit, 0, False

    def update(self, n: int) -> None:
        self.seen += n
        if self.seen >= self.limit:
            raise KeyboardInterrupt

    def close(self) -> None:
        self.closed = True


def test_ctrl_c_saves_a_checkpoint_of_every_byte_on_disk(fake_hub, remote, content, tmp_path):
    final = tmp_path / "lib" / NAME
    bars: list[_CtrlCAfter] = []

    def ctrl_c_bar(_label: str, _total: int | None, _initial: int) -> _CtrlCAfter:
        bars.append(_CtrlCAfter(600_000))
        return bars[-1]

    with pytest.raises(hub_download.DownloadInterrupted) as caught:
        get(remote, final, progress_factory=ctrl_c_bar)
    have = caught.value.have
    assert have >= 600_000 and bars[0].closed
    state = json.loads(hub_download.state_path(final).read_text())
    assert state["checkpoint"]["size"] == have == hub_download.part_path(final).stat().st_size
    # Only the partial, its record and its lock: no temporary file of the record is left.
    assert sorted(p.name for p in final.parent.iterdir()) == sorted(
        [f"{NAME}.part", f"{NAME}.part.json", f"{NAME}.part.lock"]
    )
    result = get(remote, final)
    assert result.resumed_from == have and result.fetched == len(content) - have
    assert final.read_bytes() == content
    assert sorted(p.name for p in final.parent.iterdir()) == [NAME]
