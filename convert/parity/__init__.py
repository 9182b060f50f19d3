"""Proofs that a GGUF behaves like its checkpoint: identical token ids, matching logits."""
