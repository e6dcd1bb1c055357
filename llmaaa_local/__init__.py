"""llmaaa-local: a small local LLM as annotator (LLMaAA active learning + LlamBERT students), offline."""

__version__ = "0.1.0"
