"""llmaaa-local: a small local LLM as annotator (LLMaAA active learning + LlamBERT students), offline."""

import os

__version__ = "0.1.0"

# Offline by design: Hugging Face libraries must never reach a hub from this tool (models come from local paths;
# `models pull` uses the package registry through pip). A user can still override these in the environment.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_name, "1")
