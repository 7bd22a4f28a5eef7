"""sfumato detector package (lands with the detector issue)."""
