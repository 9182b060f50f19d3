"""A converted model in the chat runtime: the Unicode normalization the original tokenizer
applies (Qwen2's NFC), recorded in the GGUF by the converter, is applied to what the user
types — so decomposed Vietnamese, Thai or Khmer input reaches the model as the original would
have tokenized it."""

from __future__ import annotations

import unicodedata

from tokenizers import Tokenizer

from seachat.app.chat.runtime import Runtime
from seachat.convert import pipeline

TEXTS = [
    "Tiếng Việt có dấu: ệ ở ữ",
    "ภาษาไทย ผู้ใหญ่ น้ำ",
    "ខ្មែរ ស្ត្រី",
    "مرحبًا بكم",
]


def test_runtime_normalizes_like_the_original(tiny_dir, tmp_path) -> None:
    src = tiny_dir("qwen2-bpe")
    out = tmp_path / "qwen2.gguf"
    pipeline.convert(str(src), out, "f32")
    reference = Tokenizer.from_file(str(src / "tokenizer.json"))
    rt = Runtime(out, n_ctx=256, n_threads=2)
    try:
        assert rt.normalizer == "NFC"
        for text in TEXTS:
            decomposed = unicodedata.normalize("NFD", text)
            expected = reference.encode(decomposed, add_special_tokens=False).ids
            assert rt.tokenize_text(decomposed) == expected
            assert rt.tokenize_text(decomposed) == rt.tokenize_text(
                unicodedata.normalize("NFC", text)
            )
        # chat prompts too: the user's content is normalized, the template's tokens untouched
        prompt = rt.tokenize_chat(
            [{"role": "user", "content": unicodedata.normalize("NFD", TEXTS[0])}]
        )
        nfc_prompt = rt.tokenize_chat([{"role": "user", "content": TEXTS[0]}])
        assert prompt == nfc_prompt
    finally:
        rt.close()
