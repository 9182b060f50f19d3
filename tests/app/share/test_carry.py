"""`seachat export` / `seachat import`: a model through a folder (a USB stick), verified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.app.libtest import KHMER_NAME, THAI_NAME
from tests.app.share.conftest import KHMER_FILE, THAI_FILE


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_import_round_trip(seachat, library, tmp_path):
    (library / (THAI_FILE + ".eval.json")).write_text('{"languages": {}}', encoding="utf-8")
    stick = tmp_path / "usb"
    for name in (THAI_NAME, KHMER_FILE):
        result = seachat("export", name, str(stick))
        assert result.returncode == 0, result.stderr
    thai = stick / Path(THAI_FILE).stem
    manifest = json.loads((thai / "seachat-manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"] == THAI_NAME and manifest["languages"] == ["th"]
    assert [f["name"] for f in manifest["files"]] == [THAI_FILE, THAI_FILE + ".eval.json"]
    assert manifest["files"][0]["sha256"] == sha(library / THAI_FILE)

    other = tmp_path / "other-laptop"
    result = seachat("import", str(stick), env={"SEACHAT_MODELS_DIR": str(other)})
    assert result.returncode == 0, result.stderr
    for name in (THAI_FILE, KHMER_FILE, THAI_FILE + ".eval.json"):
        assert sha(other / name) == sha(library / name)
    listed = seachat("models", env={"SEACHAT_MODELS_DIR": str(other)})
    assert THAI_NAME in listed.stdout and KHMER_NAME in listed.stdout


def test_a_flipped_byte_is_refused_and_nothing_is_imported(seachat, library, tmp_path):
    stick = tmp_path / "usb"
    assert seachat("export", THAI_FILE, str(stick)).returncode == 0
    copy = stick / Path(THAI_FILE).stem / THAI_FILE
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    other = tmp_path / "other-laptop"
    result = seachat("import", str(copy.parent), env={"SEACHAT_MODELS_DIR": str(other)})
    assert result.returncode != 0
    errors = [x for x in result.stderr.splitlines() if x.startswith("seachat: error:")]
    assert len(errors) == 1 and THAI_FILE in errors[0] and "manifest" in errors[0]
    assert not other.exists() or not any(p.name.endswith(".gguf") for p in other.iterdir())


def test_an_interrupted_export_continues_where_it_stopped(seachat, library, tmp_path):
    stick = tmp_path / "usb"
    folder = stick / Path(THAI_FILE).stem
    folder.mkdir(parents=True)
    source = (library / THAI_FILE).read_bytes()
    part = folder / (THAI_FILE + ".part")
    part.write_bytes(source[: len(source) // 3])  # what a yanked stick kept
    result = seachat("export", THAI_FILE, str(stick))
    assert result.returncode == 0, result.stderr
    assert "copying it again" not in result.stderr  # the kept third was reused, not rewritten
    assert sha(folder / THAI_FILE) == sha(library / THAI_FILE) and not part.exists()

    # A kept prefix that is damaged is found by its digest and copied again from the start.
    (folder / "seachat-manifest.json").unlink()
    (folder / THAI_FILE).unlink()
    damaged = bytearray(source[: len(source) // 3])
    damaged[100] ^= 0xFF
    part.write_bytes(bytes(damaged))
    result = seachat("export", THAI_FILE, str(stick))
    assert result.returncode == 0 and "copying it again" in result.stderr
    assert sha(folder / THAI_FILE) == sha(library / THAI_FILE)


def test_an_interrupted_import_continues_and_only_then_appears(seachat, library, tmp_path):
    stick = tmp_path / "usb"
    assert seachat("export", THAI_FILE, str(stick)).returncode == 0
    other = tmp_path / "other-laptop"
    other.mkdir()
    source = (library / THAI_FILE).read_bytes()
    (other / (THAI_FILE + ".import.part")).write_bytes(source[: len(source) // 2])
    before = seachat("models", env={"SEACHAT_MODELS_DIR": str(other)})
    assert THAI_NAME not in before.stdout  # a part file is not a model
    result = seachat("import", str(stick), env={"SEACHAT_MODELS_DIR": str(other)})
    assert result.returncode == 0, result.stderr
    assert sha(other / THAI_FILE) == sha(library / THAI_FILE)
    assert not (other / (THAI_FILE + ".import.part")).exists()


def test_import_of_an_unfinished_export_says_so(seachat, library, tmp_path):
    stick = tmp_path / "usb"
    assert seachat("export", THAI_FILE, str(stick)).returncode == 0
    (stick / Path(THAI_FILE).stem / "seachat-manifest.json").unlink()
    result = seachat("import", str(stick))
    assert result.returncode != 0 and "seachat-manifest.json" in result.stderr
