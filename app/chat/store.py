"""Conversations on disk: SQLite (stdlib sqlite3) in WAL mode, with versioned migrations.

Durability is the point: every message is committed the moment it is complete, and a reply
being streamed is written every second or so with status "streaming", so a crash, a kill or
a power cut loses at most the last second of an answer and nothing the user already saw
finish. When the app starts, rows still marked "streaming" become "interrupted".
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seachat.convert.errors import UserError

# Each entry upgrades the schema from version i to i+1; never edit a released one, append.
MIGRATIONS: list[str] = [
    # 1: conversations and their messages
    """
    CREATE TABLE conversations (
        id            INTEGER PRIMARY KEY,
        title         TEXT    NOT NULL,
        created       REAL    NOT NULL,
        updated       REAL    NOT NULL,
        model         TEXT    NOT NULL DEFAULT '',
        system_prompt TEXT    NOT NULL DEFAULT '',
        settings      TEXT    NOT NULL DEFAULT '{}'
    );
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        position        INTEGER NOT NULL,
        role            TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content         TEXT    NOT NULL,
        status          TEXT    NOT NULL DEFAULT 'complete',
        created         REAL    NOT NULL,
        UNIQUE (conversation_id, position)
    );
    CREATE INDEX conversations_by_update ON conversations(updated DESC);
    """,
    # 2: app-wide preferences (theme, last model) and per-answer statistics
    """
    CREATE TABLE preferences (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    ALTER TABLE messages ADD COLUMN stats TEXT NOT NULL DEFAULT '{}';
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# Message status values.
COMPLETE = "complete"
STREAMING = "streaming"  # being generated right now (or the app died while it was)
STOPPED = "stopped"  # the user stopped it; the partial text is kept
INTERRUPTED = "interrupted"  # the app was killed while it streamed
ERROR = "error"
INCOMPLETE = (STREAMING, STOPPED, INTERRUPTED, ERROR)


@dataclass
class Conversation:
    id: int
    title: str
    created: float
    updated: float
    model: str = ""
    system_prompt: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    id: int
    conversation_id: int
    position: int
    role: str
    content: str
    status: str = COMPLETE
    created: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def incomplete(self) -> bool:
        return self.status in INCOMPLETE


def fold(text: str | None) -> str:
    """Search key: NFC (so typed and stored Thai/Khmer compare equal) and case-folded."""
    return unicodedata.normalize("NFC", text or "").casefold()


class Store:
    """All conversation data. Safe to call from the UI thread and one worker thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.create_function("fold", 1, fold, deterministic=True)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise UserError(
                f"{self.path}: cannot open the conversation database ({exc}); "
                f"move the file aside to start fresh"
            ) from exc

    # -- schema -------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self._lock:
            has = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
            ).fetchone()
            if not has:
                return 0
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            return int(row[0]) if row else 0

    def _migrate(self, target: int = SCHEMA_VERSION) -> None:
        with self._lock:
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise UserError(
                    f"{self.path}: made by a newer seachat (schema {current} > {SCHEMA_VERSION}); "
                    f"upgrade seachat"
                )
            for version in range(current, target):
                with self._transaction() as db:
                    if version == 0:
                        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                        db.execute("INSERT INTO schema_version VALUES (0)")
                    for statement in _statements(MIGRATIONS[version]):
                        db.execute(statement)
                    db.execute("UPDATE schema_version SET version = ?", (version + 1,))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def recover_interrupted(self) -> int:
        """Mark answers left "streaming" by a process that died as "interrupted".

        Called once when the app starts. (Were another seachat streaming at that moment, its
        next draft save sets the status back, so nothing is lost.)
        """
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE messages SET status = ? WHERE status = ?", (INTERRUPTED, STREAMING)
            )
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- conversations --------------------------------------------------------------------
    def create_conversation(
        self,
        title: str = "New chat",
        model: str = "",
        system_prompt: str = "",
        settings: dict[str, Any] | None = None,
    ) -> Conversation:
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO conversations (title, created, updated, model, system_prompt, settings)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (title, now, now, model, system_prompt, json.dumps(settings or {})),
            )
            cid = int(cur.lastrowid or 0)
        return Conversation(cid, title, now, now, model, system_prompt, dict(settings or {}))

    def get_conversation(self, conversation_id: int) -> Conversation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, title, created, updated, model, system_prompt, settings"
                " FROM conversations WHERE id = ?",
                (conversation_id,),
            ).fetchone()
        return _conversation(row) if row else None

    def list_conversations(self, query: str = "") -> list[Conversation]:
        """Newest first; with `query`, those whose title or any message contains it."""
        sql = (
            "SELECT id, title, created, updated, model, system_prompt, settings FROM conversations"
        )
        args: tuple[Any, ...] = ()
        if query.strip():
            pattern = "%" + _escape_like(fold(query.strip())) + "%"
            sql += (
                " WHERE fold(title) LIKE ?1 ESCAPE '\\' OR id IN (SELECT conversation_id FROM"
                " messages WHERE fold(content) LIKE ?1 ESCAPE '\\')"
            )
            args = (pattern,)
        sql += " ORDER BY updated DESC, id DESC"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_conversation(r) for r in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        title = " ".join(title.split()) or "Untitled"
        with self._transaction() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))

    def delete(self, conversation_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def update_conversation(
        self,
        conversation_id: int,
        *,
        system_prompt: str | None = None,
        settings: dict[str, Any] | None = None,
        model: str | None = None,
    ) -> None:
        sets, args = [], []
        for column, value in (
            ("system_prompt", system_prompt),
            ("settings", None if settings is None else json.dumps(settings)),
            ("model", model),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        if not sets:
            return
        with self._transaction() as db:
            db.execute(
                f"UPDATE conversations SET {', '.join(sets)} WHERE id = ?", (*args, conversation_id)
            )

    # -- messages -------------------------------------------------------------------------
    def messages(self, conversation_id: int) -> list[Message]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, conversation_id, position, role, content, status, created, stats"
                " FROM messages WHERE conversation_id = ? ORDER BY position",
                (conversation_id,),
            ).fetchall()
        return [_message(r) for r in rows]

    def add_message(
        self, conversation_id: int, role: str, content: str, status: str = COMPLETE
    ) -> Message:
        now = time.time()
        with self._transaction() as db:
            (position,) = db.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM messages WHERE conversation_id = ?",
                (conversation_id,),
            ).fetchone()
            cur = db.execute(
                "INSERT INTO messages (conversation_id, position, role, content, status, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (conversation_id, position, role, content, status, now),
            )
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
        return Message(
            int(cur.lastrowid or 0), conversation_id, position, role, content, status, now
        )

    def update_message(
        self,
        message_id: int,
        content: str,
        status: str,
        stats: dict[str, Any] | None = None,
    ) -> None:
        with self._transaction() as db:
            if stats is None:
                db.execute(
                    "UPDATE messages SET content = ?, status = ? WHERE id = ?",
                    (content, status, message_id),
                )
            else:
                db.execute(
                    "UPDATE messages SET content = ?, status = ?, stats = ? WHERE id = ?",
                    (content, status, json.dumps(stats), message_id),
                )
            db.execute(
                "UPDATE conversations SET updated = ? WHERE id ="
                " (SELECT conversation_id FROM messages WHERE id = ?)",
                (time.time(), message_id),
            )

    def delete_messages_from(self, conversation_id: int, position: int) -> None:
        """Drop the message at `position` and everything after it (edit / regenerate)."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                (conversation_id, position),
            )

    # -- preferences ----------------------------------------------------------------------
    def get_preference(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM preferences WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_preference(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO preferences (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conversation(row: tuple[Any, ...]) -> Conversation:
    cid, title, created, updated, model, system_prompt, settings = row
    return Conversation(cid, title, created, updated, model, system_prompt, _json(settings))


def _message(row: tuple[Any, ...]) -> Message:
    mid, cid, position, role, content, status, created, stats = row
    return Message(mid, cid, position, role, content, status, created, _json(stats))


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def open_store(path: str | Path | None = None) -> Store:
    from seachat.app.paths import conversations_db

    return Store(path or conversations_db())
