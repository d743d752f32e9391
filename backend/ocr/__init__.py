"""Event-triggered text reading (OCR) that runs beside the per-frame pipeline."""
