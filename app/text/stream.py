"""Turn a model's byte stream into text that is safe to show at every step.

A token is not a character: byte-fallback vocabularies emit a Burmese or Khmer letter, or an
emoji, as several one-byte tokens, and a cluster such as ``ក្សា`` arrives in pieces. Showing
each piece as it comes would flash U+FFFD or a base letter without its marks. StreamText
decodes UTF-8 incrementally (holding incomplete sequences, dropping invalid bytes instead of
showing U+FFFD) and holds back the last grapheme cluster until the next one starts, because
only then is it known to be complete.
"""

from __future__ import annotations

import codecs

from seachat.app.text.segment import grapheme_boundaries


class StreamText:
    """Feed bytes, get back the newly safe-to-show text; `finish()` flushes the rest."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._pending = ""  # decoded, not yet shown (the last, possibly growing cluster)
        self.shown = ""  # everything returned so far

    def feed(self, data: bytes) -> str:
        if not data:
            return ""
        self._pending += self._decoder.decode(data)
        if not self._pending:
            return ""
        bounds = grapheme_boundaries(self._pending)
        cut = bounds[-2] if len(bounds) >= 2 else 0  # start of the last cluster
        if cut <= 0:
            return ""
        out, self._pending = self._pending[:cut], self._pending[cut:]
        self.shown += out
        return out

    def finish(self) -> str:
        out = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        self.shown += out
        return out

    @property
    def text(self) -> str:
        """Everything decoded so far, including the held-back tail (for saving drafts)."""
        return self.shown + self._pending
