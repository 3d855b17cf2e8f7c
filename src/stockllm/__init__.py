"""stockllm: forecast the next few daily closes with a LoRA-tuned language model, beside honest baselines."""

__version__ = "0.1.0"
