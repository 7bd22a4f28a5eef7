"""The networks of Zakharov et al. (ICCV 2019): embedder E, generator G driven through P, discriminator D."""

from generator.model.checkpoint import (
    Checkpoint,
    CheckpointError,
    export_model,
    load_checkpoint,
    save_checkpoint,
)
from generator.model.config import LossConfig, ModelConfig, Preset, TrainConfig, get_preset, list_presets
from generator.model.discriminator import Discriminator
from generator.model.embedder import Embedder
from generator.model.generator import Generator
from generator.model.talking_head import TalkingHeadModel, load_meta_model

__all__ = [
    "Checkpoint", "CheckpointError", "Discriminator", "Embedder", "Generator", "LossConfig", "ModelConfig",
    "Preset", "TalkingHeadModel", "TrainConfig", "export_model", "get_preset", "list_presets",
    "load_checkpoint", "load_meta_model", "save_checkpoint",
]
