"""Checkpoints in safetensors: module weights, optimiser state and JSON metadata in one file.

Nothing is ever unpickled: tensors go through safetensors, everything else (configs, step, Adam
hyper-parameters, corpus layout) is JSON in the file's metadata. Files are written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import nn

from generator import __version__
from generator.errors import SfumatoError
from generator.io.files import atomic_path

FORMAT = "sfumato/1"


class CheckpointError(SfumatoError):
    """A checkpoint that is damaged, of another kind or preset, or from another architecture."""


@dataclasses.dataclass
class Checkpoint:
    """The tensors of a checkpoint file and its metadata."""

    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict

    @property
    def kind(self) -> str:
        """"meta" (a meta-training run) or "person" (a fine-tuned or feed-forward person)."""
        return self.meta["kind"]

    def module_state(self, prefix: str) -> dict[str, torch.Tensor]:
        """The state dict saved under ``prefix`` (e.g. "E")."""
        p = prefix + "."
        return {k[len(p):]: v for k, v in self.tensors.items() if k.startswith(p)}

    def load_module(self, prefix: str, module: nn.Module) -> None:
        """Load ``module`` from the tensors under ``prefix``; a mismatch is a clear error."""
        state = self.module_state(prefix)
        if not state:
            raise CheckpointError(f"{self.path}: holds no weights for {prefix}")
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{self.path}: {prefix} weights do not fit this architecture "
                                  f"({first})") from exc

    def load_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Restore an optimiser saved with ``save_checkpoint``."""
        saved = self.meta.get("optimizers", {}).get(name)
        if saved is None:
            raise CheckpointError(f"{self.path}: holds no optimiser state for {name}")
        state = {}
        prefix = f"opt.{name}."
        for key, value in self.tensors.items():
            if key.startswith(prefix):
                idx, field = key[len(prefix):].split(".", 1)
                state.setdefault(int(idx), {})[field] = value
        for idx, extra in saved.get("scalars", {}).items():
            state.setdefault(int(idx), {}).update(extra)
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def save_checkpoint(path: str | os.PathLike, kind: str, modules: dict[str, nn.Module | dict],
                    meta: dict, optimizers: dict[str, torch.optim.Optimizer] | None = None,
                    tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write modules (or raw state dicts), optimisers, extra tensors and metadata to ``path``."""
    from safetensors.torch import save_file

    out: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        state = module if isinstance(module, dict) else module.state_dict()
        for k, v in state.items():
            out[f"{prefix}.{k}"] = v.detach().cpu().contiguous()
    opt_meta = {}
    for name, opt in (optimizers or {}).items():
        sd = opt.state_dict()
        scalars = {}
        for idx, fields in sd["state"].items():
            for field, value in fields.items():
                if torch.is_tensor(value):
                    out[f"opt.{name}.{idx}.{field}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[field] = value
        opt_meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    for k, v in (tensors or {}).items():
        out[k] = v.detach().cpu().contiguous()
    full_meta = {"format": FORMAT, "kind": kind, "sfumato_version": __version__,
                 "optimizers": opt_meta, **meta}
    with atomic_path(path) as tmp:
        save_file(out, str(tmp), metadata={"sfumato": json.dumps(full_meta, default=_jsonable)})
    return Path(path)


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    if torch.is_tensor(value):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")


def load_checkpoint(path: str | os.PathLike, kind: str | None = None,
                    preset: str | None = None) -> Checkpoint:
    """Read a checkpoint, checking it is one of sfumato's, of ``kind`` and ``preset`` if given."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("sfumato")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for damaged headers/data
        raise CheckpointError(f"{p}: damaged or not a safetensors checkpoint ({exc})") from exc
    if raw is None:
        raise CheckpointError(f"{p}: a safetensors file, but not a sfumato checkpoint")
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{p}: damaged checkpoint metadata") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: unknown checkpoint format {meta.get('format')!r}")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{p}: a {meta.get('kind')} checkpoint, expected a {kind} checkpoint")
    if preset is not None and meta.get("preset") != preset:
        raise CheckpointError(f"{p}: made with preset {meta.get('preset')!r}, not {preset!r}")
    return Checkpoint(p, tensors, meta)


EXPORT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def export_model(checkpoint: str | os.PathLike, out: str | os.PathLike, dtype: str = "fp16",
                 extra_meta: dict | None = None) -> dict:
    """A meta-training checkpoint -> a release file: E, G, D only (no optimiser or RNG state), floats
    stored as ``dtype`` (loading casts them back to fp32), training metadata and provenance kept."""
    from generator.io.files import sha256_file

    if dtype not in EXPORT_DTYPES:
        raise CheckpointError(f"dtype must be one of {', '.join(EXPORT_DTYPES)}, not {dtype!r}")
    ck = load_checkpoint(checkpoint, kind="meta")
    to = EXPORT_DTYPES[dtype]
    modules = {}
    for name in ("E", "G", "D"):
        state = ck.module_state(name)
        if not state:
            raise CheckpointError(f"{checkpoint}: holds no weights for {name}")
        modules[name] = {k: v.to(to) if v.is_floating_point() else v for k, v in state.items()}
    keep = ("preset", "model", "train", "corpus", "corpus_videos", "step", "calibrated_D")
    meta = {k: ck.meta[k] for k in keep if k in ck.meta}
    meta["export"] = {"from_sha256": sha256_file(checkpoint), "dtype": dtype,
                      "trained_with_version": ck.meta.get("sfumato_version"), **(extra_meta or {})}
    path = save_checkpoint(out, "meta", modules, meta)
    counts = {name: sum(v.numel() for v in state.values()) for name, state in modules.items()}
    return {"out": str(path), "bytes": path.stat().st_size, "dtype": dtype, "step": meta.get("step"),
            "preset": meta.get("preset"), "parameters": counts, "sha256": sha256_file(path)}
