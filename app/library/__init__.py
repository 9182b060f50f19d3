"""The model library on disk: which GGUF files are models, what each one is, whether it fits."""
