"""A checkpoint's tokenizer turned into the vocabulary, pre-tokenizer and special tokens
llama.cpp needs.
"""
