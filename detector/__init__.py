"""sfumato's detector: face samples, a timm backbone, the realism score as evidence, their fusion,
evaluation (``sfumato detect``) and ``sfumato scan``; plus the clip metadata schema of datasets."""
