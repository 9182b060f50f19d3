"""The one layer over llama.cpp's C API (llama-cpp-python's ctypes bindings): log sink, threads,
model/context/vocabulary loading, tokenize, and the quantizer call.
"""
