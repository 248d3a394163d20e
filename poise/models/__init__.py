"""Models: per-modality encoders (``lite``), fusion modules and the encode/decode multi-modal pose model."""
