"""Run by torchrun in test_meta_train: train test_tiny for 3 steps, save this rank's weights."""

import dataclasses
import sys

import torch

from generator.model.config import get_preset
from generator.training.meta_train import train

if __name__ == "__main__":
    corpus, run_dir, out = sys.argv[1:4]
    cfg = dataclasses.replace(get_preset("test_tiny").train, steps=3, checkpoint_every=3)
    result = train(corpus, run_dir, "test_tiny", cfg)
    state = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
    torch.save(state, f"{out}/rank{result.rank}.pt")
