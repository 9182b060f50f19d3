"""`seachat pull` end to end: the real CLI in a subprocess, huggingface-hub's real HTTP client,
and a loopback Hub that speaks the same endpoints and headers as huggingface.co and can cut
connections, corrupt bytes, answer 503 or ignore Range on command."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import pytest

from seachat.convert.units import human_bytes
from tests.app.fakehub import FakeHub, Faults, PortalServer, SilentServer, closed_port_endpoint
from tests.app.libtest import ARABIC_NAME, BURMESE_NAME, THAI_NAME, spawn_seachat, write_gguf

REPO = "sea-org/Tiny-SEA-GGUF"
MIXED_FILE = "ខ្មែរ-ລາວ-မြန်မာ-العربية-IQ4_XS.gguf"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def repo_files(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    return {
        "tiny-sea-Q4_K_M.gguf": write_gguf(
            src / "a.gguf", name=THAI_NAME, n_bytes=3 << 20, seed=1, languages=["th", "km"]
        ),
        "tiny-sea-Q4_K_S.gguf": write_gguf(src / "b.gguf", n_bytes=2 << 20, seed=2),
        "tiny-sea-sea-q4.gguf": write_gguf(
            src / "c.gguf", name=ARABIC_NAME, n_bytes=(5 << 20) + 12345, seed=3, profile="sea-q4"
        ),
        # A Thai file name: the repo listing, the URL quoting and the library must all cope.
        "ไทย-Q8_0.gguf": write_gguf(src / "d.gguf", n_bytes=1 << 20, seed=4, file_type=7),
        "mmproj-F16.gguf": write_gguf(src / "e.gguf", n_bytes=4096, seed=5, file_type=1),
        # Khmer, Lao, Burmese and Arabic in one name (with a Khmer coeng and Burmese asat).
        MIXED_FILE: write_gguf(src / "f.gguf", n_bytes=256 << 10, seed=6, file_type=30),
    }


@pytest.fixture
def repo(fake_hub: FakeHub, repo_files: dict[str, Path]) -> dict[str, Path]:
    files = {name: p.read_bytes() for name, p in repo_files.items()}
    files["README.md"] = "# Tiny SEA\n\nภาษาไทย ខ្មែរ ລາວ မြန်မာ العربية\n".encode()
    fake_hub.add_repo(REPO, files)
    return repo_files


def read_state(models_dir: Path, name: str) -> dict:
    return json.loads((models_dir / f"{name}.part.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- happy paths


def test_pull_real_gguf_verified_and_listed(
    seachat, fake_hub: FakeHub, smollm2_gguf: Path, models_dir: Path, library_env
):
    """A real model (SmolLM2, 98 MB) through the whole path: listing, HEAD, 302 to another
    origin, GET; sha256 checked; then `seachat models` reads it; a second pull is a no-op."""
    fake_hub.add_repo(
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", {smollm2_gguf.name: smollm2_gguf.read_bytes()}
    )
    env = {"HF_TOKEN": "hf_loopback_token"}
    r = seachat("pull", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", env=env)
    assert r.returncode == 0, r.output
    final = models_dir / smollm2_gguf.name
    assert r.stdout.strip() == str(final)
    assert sha256(final) == sha256(smollm2_gguf)
    assert "sha256 verified" in r.stderr
    assert not list(models_dir.glob("*.part*")), "no partial files left behind"
    assert fake_hub.served(smollm2_gguf.name) == smollm2_gguf.stat().st_size

    # The token goes to the Hub, never to the other origin that serves the bytes.
    hub_reqs = [q for q in fake_hub.requests if q["role"] == "hub"]
    cdn_reqs = [q for q in fake_hub.requests if q["role"] == "cdn"]
    assert hub_reqs and all(q["auth"] == "Bearer hf_loopback_token" for q in hub_reqs)
    assert cdn_reqs and all(q["auth"] is None for q in cdn_reqs)

    listing = seachat("models", "--json")
    data = json.loads(listing.stdout)
    (model,) = data["models"]
    assert model["file"] == smollm2_gguf.name
    assert model["architecture"] == "llama"
    assert model["source"]["repo_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"

    again = seachat("pull", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:" + smollm2_gguf.name)
    assert again.returncode == 0, again.output
    assert "up to date" in again.stderr
    assert fake_hub.served(smollm2_gguf.name) == smollm2_gguf.stat().st_size  # nothing refetched


def test_pull_lists_choices_when_ambiguous(seachat, repo, models_dir: Path):
    r = seachat("pull", REPO)
    assert r.returncode == 2
    assert "has 5 GGUF files; pick one" in r.stderr
    # Every model file with its size; the vision projector is not offered as a model.
    for name, label in (
        ("tiny-sea-Q4_K_M.gguf", "Q4_K_M"),
        ("tiny-sea-Q4_K_S.gguf", "Q4_K_S"),
        ("tiny-sea-sea-q4.gguf", "sea-q4"),
        ("ไทย-Q8_0.gguf", "Q8_0"),
        (MIXED_FILE, "IQ4_XS"),
    ):
        line = next(ln for ln in r.stdout.splitlines() if ln.rstrip().endswith(name))
        assert line.split()[:1] == [label]
        assert f"  {human_bytes(repo[name].stat().st_size)}  " in line
    assert "mmproj" not in r.stdout
    assert not any(models_dir.iterdir()), "nothing downloaded"

    partial = seachat("pull", f"{REPO}:Q4_K")
    assert partial.returncode == 2
    assert "matches 2 files" in partial.stderr
    assert "tiny-sea-Q4_K_M.gguf" in partial.stdout and "tiny-sea-Q4_K_S.gguf" in partial.stdout

    listed = seachat("pull", REPO, "--list")
    assert listed.returncode == 0
    assert "ไทย-Q8_0.gguf" in listed.stdout


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("Q4_K_M", "tiny-sea-Q4_K_M.gguf"),
        ("q4-k-s", "tiny-sea-Q4_K_S.gguf"),
        ("sea-q4", "tiny-sea-sea-q4.gguf"),
        ("Q8_0", "ไทย-Q8_0.gguf"),
        ("mmproj-F16.gguf", "mmproj-F16.gguf"),  # an exact name is always honoured
        ("iq4_xs", MIXED_FILE),
        (MIXED_FILE, MIXED_FILE),
    ],
)
def test_pull_selects_by_profile_quant_or_name(seachat, repo, models_dir, selector, expected):
    r = seachat("pull", f"{REPO}:{selector}")
    assert r.returncode == 0, r.output
    final = models_dir / expected
    assert final.is_file()
    assert sha256(final) == sha256(repo[expected])


# --------------------------------------------------------------------------- weak connections


def test_cut_connection_resumes_in_second_run(seachat, fake_hub: FakeHub, repo, models_dir):
    """The link drops after ~1.2 MB and this run gives up (--retries 0). The next run asks
    only for the rest, with a Range request, and the result is byte-identical."""
    name = "tiny-sea-sea-q4.gguf"
    size = repo[name].stat().st_size
    cut = 1_234_567
    fake_hub.faults[name] = Faults(cut_after=[cut])

    first = seachat("pull", f"{REPO}:sea-q4", "--retries", "0")
    assert first.returncode == 2, first.output
    assert "run the same command again to resume" in first.stderr
    assert not (models_dir / name).exists(), "nothing under the final name"
    kept = read_state(models_dir, name)["checkpoint"]["size"]
    assert (models_dir / f"{name}.part").stat().st_size == kept
    assert kept == cut  # every byte received before the cut was kept
    assert fake_hub.served(name) == cut

    second = seachat("pull", f"{REPO}:sea-q4")
    assert second.returncode == 0, second.output
    fetched_second = fake_hub.served(name) - cut
    assert fetched_second == size - kept, (fetched_second, size - kept)
    ranges = [q["range"] for q in fake_hub.requests if q["role"] == "cdn"]
    assert ranges[-1] == f"bytes={kept}-"
    assert "resuming at" in second.stderr
    assert sha256(models_dir / name) == sha256(repo[name])
    assert not list(models_dir.glob("*.part*"))
    print(f"\nresume: first run kept {kept} B, second run fetched {fetched_second} B of {size} B")


def test_drops_within_one_run_are_retried_from_where_they_stopped(
    seachat, fake_hub: FakeHub, repo, models_dir
):
    name = "tiny-sea-Q4_K_M.gguf"
    size = repo[name].stat().st_size
    fake_hub.faults[name] = Faults(cut_after=[700_000, 900_000])
    r = seachat("pull", f"{REPO}:Q4_K_M")
    assert r.returncode == 0, r.output
    assert r.stderr.count("retrying in") == 2
    assert fake_hub.served(name) == size  # nothing fetched twice
    assert sha256(models_dir / name) == sha256(repo[name])


def test_transient_503_and_429_are_retried_with_backoff(
    seachat, fake_hub: FakeHub, repo, models_dir
):
    name = "tiny-sea-Q4_K_S.gguf"
    fake_hub.faults[name] = Faults(status=[503, 429], retry_after="1")
    fake_hub.api_faults = [503]  # the listing call is retried too
    t0 = time.monotonic()
    r = seachat("pull", f"{REPO}:Q4_K_S")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.output
    assert "HTTP 503" in r.stderr and "HTTP 429" in r.stderr
    assert sha256(models_dir / name) == sha256(repo[name])
    assert elapsed >= 1.0  # it waited (Retry-After: 1) instead of hammering the server


def test_dead_link_gives_up_after_bounded_retries(seachat, fake_hub: FakeHub, repo, models_dir):
    name = "tiny-sea-Q4_K_S.gguf"
    fake_hub.faults[name] = Faults(status=[503] * 10)
    r = seachat("pull", f"{REPO}:Q4_K_S", "--retries", "2")
    assert r.returncode == 2
    assert "giving up after 2 retries" in r.stderr
    assert not (models_dir / name).exists()


def test_corrupted_download_is_rejected_and_not_installed(
    seachat, fake_hub: FakeHub, repo, models_dir
):
    name = "tiny-sea-Q4_K_M.gguf"
    fake_hub.faults[name] = Faults(corrupt=True)
    r = seachat("pull", f"{REPO}:Q4_K_M")
    assert r.returncode == 2
    assert "do not match the Hub's sha256" in r.stderr
    assert "nothing was installed" in r.stderr
    assert not (models_dir / name).exists()
    assert not list(models_dir.glob("*.part*")), "the bad bytes are not kept for resuming"
    # Next time the server behaves: a clean download.
    fake_hub.faults[name] = Faults()
    assert seachat("pull", f"{REPO}:Q4_K_M").returncode == 0
    assert sha256(models_dir / name) == sha256(repo[name])


def test_server_ignoring_range_restarts_cleanly(seachat, fake_hub: FakeHub, repo, models_dir):
    name = "tiny-sea-Q4_K_M.gguf"
    fake_hub.faults[name] = Faults(cut_after=[500_000], ignore_range=True)
    r = seachat("pull", f"{REPO}:Q4_K_M")
    assert r.returncode == 0, r.output
    assert "ignored the Range request" in r.stderr
    assert sha256(models_dir / name) == sha256(repo[name])


def test_changed_remote_file_discards_the_partial(seachat, fake_hub: FakeHub, repo, models_dir):
    name = "tiny-sea-Q4_K_M.gguf"
    fake_hub.faults[name] = Faults(cut_after=[1_000_000])
    assert seachat("pull", f"{REPO}:Q4_K_M", "--retries", "0").returncode == 2
    assert (models_dir / f"{name}.part").exists()
    new = write_gguf(models_dir.parent / "new.gguf", n_bytes=3 << 20, seed=99)
    fake_hub.replace_file(REPO, name, new.read_bytes())
    r = seachat("pull", f"{REPO}:Q4_K_M")
    assert r.returncode == 0, r.output
    assert "changed since the partial download" in r.stderr
    assert sha256(models_dir / name) == sha256(new)


def test_ctrl_c_keeps_the_partial_and_says_how_to_resume(
    library_env, fake_hub: FakeHub, repo, models_dir
):
    name = "tiny-sea-sea-q4.gguf"
    size = repo[name].stat().st_size
    fake_hub.faults[name] = Faults(throttle_bps=1_000_000)
    proc = spawn_seachat(library_env, "pull", f"{REPO}:sea-q4")
    deadline = time.monotonic() + 30
    while fake_hub.served(name) < 1_500_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Interrupted:" in err and f"seachat pull {REPO}:sea-q4" in err
    assert not (models_dir / name).exists()
    kept = read_state(models_dir, name)["checkpoint"]["size"]
    assert kept >= 1_000_000
    n_before = len(fake_hub.requests)

    fake_hub.faults[name] = Faults()
    resume = spawn_seachat(library_env, "pull", f"{REPO}:sea-q4")
    out, err = resume.communicate(timeout=60)
    assert resume.returncode == 0, err
    second_run = [q for q in fake_hub.requests[n_before:] if q["role"] == "cdn"]
    assert [q["range"] for q in second_run] == [f"bytes={kept}-"]
    assert sum(q["sent"] for q in second_run) == size - kept
    assert sha256(models_dir / name) == sha256(repo[name])


# --------------------------------------------------------------------------- offline


def test_offline_without_a_local_copy_fails_fast_and_says_so(
    seachat, fake_hub: FakeHub, repo, models_dir
):
    for args, env in (
        (("--offline",), {}),
        ((), {"HF_HUB_OFFLINE": "1"}),
    ):
        r = seachat("pull", f"{REPO}:Q4_K_M", *args, env=env)
        assert r.returncode == 2
        assert "offline" in r.stderr and "is not in the library" in r.stderr
        assert r.seconds < 5, r.seconds
    assert fake_hub.requests == [], "offline means no request at all"


def test_offline_with_a_local_copy_uses_it(seachat, fake_hub: FakeHub, repo, models_dir):
    assert seachat("pull", f"{REPO}:sea-q4").returncode == 0
    n_requests = len(fake_hub.requests)
    r = seachat("pull", f"{REPO}:sea-q4", env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.output
    assert r.stdout.strip() == str(models_dir / "tiny-sea-sea-q4.gguf")
    assert "offline (HF_HUB_OFFLINE is set): using the copy already in the library" in r.stderr
    assert len(fake_hub.requests) == n_requests


def test_unreachable_hub_fails_fast_or_uses_the_local_copy(seachat, repo, models_dir):
    refused = closed_port_endpoint()
    r = seachat("pull", f"{REPO}:Q4_K_M", env={"HF_ENDPOINT": refused})
    assert r.returncode == 2
    assert f"cannot reach {refused}" in r.stderr
    assert r.seconds < 5, r.seconds

    assert seachat("pull", f"{REPO}:Q4_K_M").returncode == 0
    r = seachat("pull", f"{REPO}:Q4_K_M", env={"HF_ENDPOINT": refused})
    assert r.returncode == 0
    assert "using the copy already in the library" in r.stderr


def test_silent_server_times_out_within_the_connect_budget(seachat, repo, models_dir):
    """A server that accepts and never answers (dead proxy, captive portal) costs the
    --timeout and not a minute: the listing's read timeout is the same short budget."""
    silent = SilentServer()
    try:
        r = seachat(
            "pull", f"{REPO}:Q4_K_M", "--timeout", "1", env={"HF_ENDPOINT": silent.endpoint}
        )
    finally:
        silent.close()
    assert r.returncode == 2
    assert "cannot reach" in r.stderr and "Timeout" in r.stderr
    assert r.seconds < 5, r.seconds
    print(f"\nsilent server: gave up after {r.seconds:.2f}s (timeout 1s)")


def test_captive_portal_is_not_mistaken_for_the_hub(seachat, repo, models_dir):
    assert seachat("pull", f"{REPO}:Q8_0").returncode == 0
    portal = PortalServer()
    try:
        r = seachat("pull", f"{REPO}:Q8_0", env={"HF_ENDPOINT": portal.endpoint})
        other = seachat("pull", f"{REPO}:Q4_K_M", env={"HF_ENDPOINT": portal.endpoint})
    finally:
        portal.close()
    assert r.returncode == 0, r.output
    assert "not from the Hub" in r.stderr and "using the copy already in the library" in r.stderr
    assert other.returncode == 2 and "captive portal" in other.stderr
    assert "Traceback" not in other.stderr


# --------------------------------------------------------------------------- Hub errors


def test_missing_repo_and_gated_repo_have_clear_messages(seachat, fake_hub: FakeHub, repo_files):
    r = seachat("pull", "nobody/does-not-exist")
    assert r.returncode == 2
    assert "no such model repository" in r.stderr
    fake_hub.add_repo(
        "corp/gated-GGUF",
        {"m-Q4_K_M.gguf": repo_files["tiny-sea-Q4_K_S.gguf"].read_bytes()},
        gated=True,
    )
    r = seachat("pull", "corp/gated-GGUF:Q4_K_M")
    assert r.returncode == 2
    assert "is gated" in r.stderr and "hf auth login" in r.stderr
    bad = seachat("pull", "not a repo!")
    assert bad.returncode == 2 and "OWNER/NAME" in bad.stderr


def test_split_gguf_is_pulled_listed_and_removed_as_one_model(
    seachat, fake_hub: FakeHub, models_dir: Path, tmp_path: Path
):
    import gguf
    import numpy as np

    src = tmp_path / "split"
    w = gguf.GGUFWriter(str(src / "big-Q8_0.gguf"), "llama", split_max_tensors=1)
    w.add_name(BURMESE_NAME)
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_context_length(2048)
    rng = np.random.default_rng(7)
    w.add_tensor("token_embd.weight", rng.standard_normal((4096, 64), dtype=np.float32))
    w.add_tensor("output.weight", rng.standard_normal((4096, 64), dtype=np.float32))
    src.mkdir()
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    parts = sorted(src.glob("*.gguf"))
    assert [p.name for p in parts] == [
        "big-Q8_0-00001-of-00002.gguf",
        "big-Q8_0-00002-of-00002.gguf",
    ]
    other = write_gguf(tmp_path / "o.gguf", n_bytes=1 << 20)
    fake_hub.add_repo(
        "org/big-GGUF",
        {**{p.name: p.read_bytes() for p in parts}, "big-Q4_K_M.gguf": other.read_bytes()},
    )

    listed = seachat("pull", "org/big-GGUF")
    assert listed.returncode == 2
    assert "(2 parts)" in listed.stdout and "big-Q8_0-00002-of-00002" not in listed.stdout

    r = seachat("pull", "org/big-GGUF:Q8_0")
    assert r.returncode == 0, r.output
    assert r.stdout.strip() == str(models_dir / parts[0].name)
    for p in parts:
        assert sha256(models_dir / p.name) == sha256(p)

    data = json.loads(seachat("models", "--json").stdout)
    (model,) = data["models"]
    assert model["file"] == parts[0].name and model["name"] == BURMESE_NAME
    assert model["size"] == sum(p.stat().st_size for p in parts)
    assert model["parameters"] == 2 * 4096 * 64

    r = seachat("rm", parts[0].name, "--yes")
    assert r.returncode == 0 and "and 1 more parts" in r.stdout
    assert not list(models_dir.glob("*.gguf"))

    # A set missing a part is shown as broken, not as a model that would fail to load.
    (models_dir / parts[0].name).write_bytes(parts[0].read_bytes())
    data = json.loads(seachat("models", "--json").stdout)
    assert data["models"] == []
    (broken,) = data["broken"]
    assert "1 of 2 parts missing" in broken["reason"]


def test_a_failing_disk_keeps_the_partial_and_resumes(
    seachat, library_env, fake_hub: FakeHub, repo, models_dir
):
    """Writes start failing mid-file (here: a file-size limit, EFBIG; a full disk is ENOSPC):
    a one-line error, the verified part kept, and the next run continues from it."""
    import resource
    import subprocess
    import sys

    name = "tiny-sea-sea-q4.gguf"
    size = repo[name].stat().st_size
    limit = 2_000_000

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "seachat.app", "pull", f"{REPO}:sea-q4"],
        env=library_env,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot write" in proc.stderr and "run the command again to resume" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (models_dir / name).exists()
    kept = read_state(models_dir, name)["checkpoint"]["size"]
    assert 0 < kept <= limit

    n_before = len(fake_hub.requests)
    r = seachat("pull", f"{REPO}:sea-q4")
    assert r.returncode == 0, r.output
    second = [q for q in fake_hub.requests[n_before:] if q["role"] == "cdn"]
    assert [q["range"] for q in second] == [f"bytes={kept}-"]
    assert sum(q["sent"] for q in second) == size - kept
    assert sha256(models_dir / name) == sha256(repo[name])
