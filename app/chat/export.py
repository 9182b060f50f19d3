"""Export a conversation as Markdown or JSON, to a file named after its title.

File names keep the title readable in any script: only characters that are unsafe in a path
on Windows, macOS or Linux (separators, reserved punctuation, control characters) are
replaced, and the name is cut at a grapheme boundary to fit the 255-byte limit of common
file systems. Files are written to a temporary name and renamed (seachat.convert.files), so
an export is never half-written and gets the permissions the user's umask gives any new file.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

from seachat.app.chat.store import Conversation, Message
from seachat.app.text.segment import graphemes
from seachat.convert.files import write_text_atomic

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*\u202a-\u202e\u2066-\u2069]')
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}
MAX_NAME_BYTES = 200  # leaves room for " (2).json" inside the 255-byte limit


def safe_filename(title: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """`title` as a file name stem: readable, path-safe, at most `max_bytes` of UTF-8."""
    name = unicodedata.normalize("NFC", title)
    name = _UNSAFE.sub("_", name)
    name = " ".join(name.split()).strip(" .")
    if not name or name.upper() in _RESERVED:
        name = f"chat_{name}" if name else "chat"
    out = ""
    for cluster in graphemes(name):
        if len((out + cluster).encode("utf-8")) > max_bytes:
            break
        out += cluster
    return out.rstrip(" .") or "chat"


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds")


def to_markdown(conv: Conversation, messages: list[Message]) -> str:
    lines = [f"# {conv.title}", ""]
    meta = [f"- Date: {_stamp(conv.created)}"]
    if conv.model:
        meta.append(f"- Model: {conv.model}")
    lines += meta + [""]
    if conv.system_prompt:
        lines += ["## System", "", conv.system_prompt, ""]
    for m in messages:
        heading = {"user": "You", "assistant": "Assistant", "system": "System"}.get(m.role, m.role)
        if m.incomplete:
            heading += f" ({m.status})"
        lines += [f"## {heading}", "", m.content, ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(conv: Conversation, messages: list[Message]) -> str:
    doc = {
        "title": conv.title,
        "created": _stamp(conv.created),
        "updated": _stamp(conv.updated),
        "model": conv.model,
        "system_prompt": conv.system_prompt,
        "settings": conv.settings,
        "messages": [
            {"role": m.role, "content": m.content, "status": m.status, "created": _stamp(m.created)}
            for m in messages
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def export(conv: Conversation, messages: list[Message], directory: Path, fmt: str = "md") -> Path:
    """Write the conversation to `directory`; returns the new file (never overwrites one)."""
    if fmt not in ("md", "json"):
        raise ValueError(f"unknown export format {fmt!r}")
    text = to_markdown(conv, messages) if fmt == "md" else to_json(conv, messages)
    directory.mkdir(parents=True, exist_ok=True)
    stem = safe_filename(conv.title)
    target = directory / f"{stem}.{fmt}"
    n = 2
    while target.exists():
        target = directory / f"{stem} ({n}).{fmt}"
        n += 1
    write_text_atomic(target, text)
    return target
