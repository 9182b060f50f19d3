"""Quantization: profiles, per-tensor plans, importance matrices from balanced calibration
text, llama.cpp's quantizer, per-language evaluation and `tune`.
"""
