"""sfumato benchmarks: speed and quality measurements, benchmark datasets."""
