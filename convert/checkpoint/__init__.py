"""Reading a Hugging Face checkpoint: where it is, its tensors (streamed), and what each
architecture becomes in GGUF (a table of rows).
"""
