"""GGUF files: the one header reader, the streaming writer, in-place metadata edits, seachat's
own metadata keys and the ggml type table.
"""
