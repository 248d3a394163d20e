"""poise: balanced multi-modal learning for regression (four-modality 3D human pose estimation, MM-Fi format)."""

__version__ = "0.1.0"
