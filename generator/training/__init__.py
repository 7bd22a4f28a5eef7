"""Training: the losses (paper eq. 1-5), meta-learning, few-shot fine-tuning, D calibration and DDP.

The jobs ``calibrate`` and ``finetune`` live in the modules of those names (``training.finetune.finetune``);
they are not re-exported here, where they would shadow the modules themselves.
"""

from generator.training.calibrate import CalibrateConfig
from generator.training.finetune import FinetuneConfig, finetune_to_file
from generator.training.meta_train import MetaTrainer, train

__all__ = ["CalibrateConfig", "FinetuneConfig", "MetaTrainer", "finetune_to_file", "train"]
