"""Inference: a Person from a few shots, rendering, realism scores r, and the main ``generate`` job.

The job itself is ``inference.generate.generate``; it is not re-exported here, where it would shadow
its module. ``inference.render`` reads the driver and runs the render loop for it.
"""

from generator.inference.generate import (
    BUNDLED_MODEL,
    BatchFailure,
    BatchResult,
    GenerateConfig,
    GenerateResult,
    SkippedOutput,
    generate_batch,
)
from generator.inference.person import (
    Person,
    init_person,
    load_person,
    person_from_sources,
    realism_discriminator,
    realism_score,
)

__all__ = [
    "BUNDLED_MODEL", "BatchFailure", "BatchResult", "GenerateConfig", "GenerateResult", "Person",
    "SkippedOutput", "generate_batch", "init_person", "load_person", "person_from_sources",
    "realism_discriminator", "realism_score",
]
