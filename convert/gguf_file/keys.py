"""GGUF metadata keys of seachat's own, shared by the converter, the quantizer and the app."""

# Unicode normalization the original tokenizer applies inside itself (e.g. Qwen2's NFC) and
# llama.cpp does not: whoever tokenizes user text for this model must apply it first.
NORMALIZER_KEY = "seachat.tokenizer.normalizer"
# The quantization profile a file was made with, and a one-line per-language quality summary.
PROFILE_KEY = "seachat.quant.profile"
QUALITY_KEY = "seachat.quant.quality_summary"
# The whole calibration record (JSON: method, text, chunk size, chunks, tokens per language).
# llama.cpp's key/value overrides pass strings through a 128-byte buffer and cut anything
# longer without a word, so the record is written after quantization, without that limit;
# llama.cpp's own `quantize.imatrix.dataset` gets a short label that fits.
CALIBRATION_KEY = "seachat.quant.calibration"
# Longest string (UTF-8 bytes) a llama.cpp key/value override carries whole.
OVERRIDE_STRING_BYTES = 127
# What `seachat convert` left out of a multimodal checkpoint (e.g. "vision tower"): the file
# holds the language model only.
DROPPED_KEY = "seachat.convert.dropped"
