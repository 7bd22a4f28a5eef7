"""sfumato's detector: the model (``detector.model``), what it reads (``detector.data``), evidence and
verdicts (``detector.evidence``), training and evaluation (``sfumato detect``), and ``sfumato scan``
with its report."""
