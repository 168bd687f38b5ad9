"""Grids: ``grid`` (the file and its expansion into hashed cells), ``scheduler`` (worker processes over
CPUs and GPUs until every cell is done), ``worker`` (one cell in its own process), ``preflight`` (the
data checked once first) and ``devices`` (who gets which threads and GPUs)."""
