"""GGUF metadata keys of seachat's own, shared by the converter, the quantizer and the app."""

# Unicode normalization the original tokenizer applies inside itself (e.g. Qwen2's NFC) and
# llama.cpp does not: whoever tokenizes user text for this model must apply it first.
NORMALIZER_KEY = "seachat.tokenizer.normalizer"
# The quantization profile a file was made with, and a one-line per-language quality summary.
PROFILE_KEY = "seachat.quant.profile"
QUALITY_KEY = "seachat.quant.quality_summary"
