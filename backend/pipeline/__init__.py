"""Per-frame vision steps: decode, preprocess, decode model outputs, track and estimate motion."""
