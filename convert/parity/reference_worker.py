"""Child process for the reference side of tokenizer parity.

Run as `python -m seachat.convert.parity.reference_worker`: reads a JSON request on stdin (the
reference spec and the texts), writes the token IDs as JSON on stdout. A plain subprocess, not
multiprocessing, so library users need no `if __name__ == "__main__"` guard.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from seachat.convert.errors import UserError
from seachat.convert.parity.tokens import ReferenceSpec, reference_ids
from seachat.convert.tokenizer.vocab import AddedToken


def encode_request(spec: ReferenceSpec, texts: list[str]) -> bytes:
    data = asdict(spec)
    data["model_dir"] = str(spec.model_dir)
    return json.dumps({"spec": data, "texts": texts}).encode("utf-8")


def decode_spec(data: dict) -> ReferenceSpec:
    return ReferenceSpec(
        model_dir=Path(data["model_dir"]),
        added=tuple(AddedToken(**a) for a in data["added"]),
        bos=data["bos"],
        eos=data["eos"],
        add_bos=data["add_bos"],
        add_eos=data["add_eos"],
        forced_control=tuple(AddedToken(**a) for a in data["forced_control"]),
        declared_special=tuple(AddedToken(**a) for a in data["declared_special"]),
    )


class ReferenceJob:
    """The reference tokenization running in a child process."""

    def __init__(self, spec: ReferenceSpec, texts: list[str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "seachat.convert.parity.reference_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(encode_request(spec, texts))
        self._proc.stdin.close()
        self._proc.stdin = None  # sent; communicate() must not touch it again

    def result(self) -> list[tuple[list[int], list[int]]]:
        out, err = self._proc.communicate()
        if self._proc.returncode != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"reference tokenizer failed: {last[0]}")
        return [tuple(pair) for pair in json.loads(out)]  # type: ignore[misc]

    def cancel(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    ids = reference_ids(decode_spec(request["spec"]), request["texts"])
    sys.stdout.write(json.dumps(ids))


if __name__ == "__main__":
    main()
