"""Quantization profiles, kept as TOML data files beside this module."""
