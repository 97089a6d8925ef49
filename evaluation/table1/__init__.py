"""Table 1 (zero-shot understanding) over the official-layout files: splits, predictions, scores,
baselines and the report. Model-free: predictions come from any ``generate(requests) -> texts``."""
