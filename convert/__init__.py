"""seachat's publisher half: checkpoint reading, GGUF writing, quantization and evaluation."""
