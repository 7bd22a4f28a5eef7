"""Rendering and realism scores from a person (few-shot fine-tuned or feed-forward).

No training code here. A ``Person`` holds G with its AdaIN parameters psi already computed (E and P
are never run per frame) and spectral norms baked into plain weights, plus D with the person's
identity vector w' for the realism score r. A texture model's person also keeps its T shots (crops
and landmarks): every frame warps the shot closest in pose to the driving landmarks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from generator.errors import BadInputError
from generator.faces.landmarks import landmark_image, to_unit_range
from generator.model.checkpoint import CheckpointError, load_checkpoint
from generator.model.config import ModelConfig
from generator.model.discriminator import Discriminator
from generator.model.generator import Generator
from generator.model.talking_head import TalkingHeadModel, bake_spectral_norm, load_meta_model, to_uint8


def landmark_batch(points: np.ndarray, size: int) -> torch.Tensor:
    """(N, 68, 2) landmarks in crop pixels -> landmark images (N, 3, size, size) in [-1, 1]."""
    return torch.from_numpy(np.stack([to_unit_range(landmark_image(p, size)) for p in points]))


def frame_batch(frames: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) in [-1, 1]."""
    return torch.from_numpy(np.stack([to_unit_range(f) for f in frames]))


@torch.inference_mode()
def realism_score(D: Discriminator, frames: np.ndarray, points: np.ndarray,
                  identity: int | torch.Tensor | None = None, batch_size: int = 16) -> np.ndarray:
    """r per frame (eq. 3) for face crops (N, S, S, 3) and their landmarks (N, 68, 2).

    ``identity``: None scores identity-agnostically (w_0 only); an int uses training video i's
    column W_i + w_0; a vector is a person's w' (sec. 3.3).
    """
    size = D.cfg.image_size
    if frames.shape[1:3] != (size, size):
        raise ValueError(f"frames must be {size}x{size} face crops, got {frames.shape[1:3]}")
    dev = next(D.parameters()).device
    out = []
    for k in range(0, len(frames), batch_size):
        x = frame_batch(frames[k:k + batch_size]).to(dev)
        y = landmark_batch(points[k:k + batch_size], size).to(dev)
        if isinstance(identity, int):
            r = D(x, y, video=torch.full((len(x),), identity, device=dev)).r
        elif identity is not None:
            r = D(x, y, w=identity.to(dev)).r
        else:
            r = D(x, y).r
        out.append(r.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def realism_discriminator(model: TalkingHeadModel) -> Discriminator:
    """A copy of the model's D for scoring r: eval mode, spectral norms baked, on the model's device."""
    D = Discriminator(model.cfg)  # a fresh module: see init_person on why not a deep copy
    D.load_state_dict(model.D.state_dict())
    return bake_spectral_norm(D.eval()).to(model.D.w_0.device)


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (a CPU with AVX512-BF16 or AMX, or a CUDA GPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:  # oneDNN's own test; private, so a torch without it means "no"
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """A precision name with "auto" made concrete: bf16 on a CPU that computes it natively, else fp32.

    bf16 renders G about 1.4-1.6x faster on such a CPU (texture128, 2 threads) and moves output
    pixels by 0.14 grey levels on average (under 1 at most); where bf16 is emulated it is slower.
    """
    if precision not in PRECISIONS:
        raise BadInputError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cpu" and native_bf16(device) else "fp32"
    return precision


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision name (None for fp32); fp16 only on CUDA."""
    precision = resolve_precision(precision, device)
    if precision == "fp16" and device.type != "cuda":
        raise BadInputError("fp16 needs a CUDA device; use bf16 on a CPU")
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)


@dataclasses.dataclass
class Person:
    """A person ready to render: G, psi (1, n_adain), D and w' (embed_dim,); for a texture model
    also the shots x (T, 3, S, S) in [-1, 1] and their landmarks (T, 68, 2) in crop pixels."""

    G: Generator
    psi: torch.Tensor
    D: Discriminator | None  # None: made for rendering only (``load_meta_model(with_d=False)``)
    w: torch.Tensor | None
    meta: dict
    shots_x: torch.Tensor | None = None
    shots_points: np.ndarray | None = None

    def textures(self, points: np.ndarray, exclude: list[int] | None = None) -> torch.Tensor | None:
        """G's texture input (N, 4, S, S) for driving landmarks (N, 68, 2); None for a pure G.

        ``exclude``: per frame, a shot not to use (fine-tuning on shot i warps the others to it).
        """
        if not self.G.cfg.texture:
            return None
        if self.shots_x is None or self.shots_points is None:
            raise BadInputError("a texture model's person needs its shots (remake the person file "
                                "with 'sfumato finetune')")
        from generator.faces.warp import texture_array

        # once per call, not per frame: the shots in OpenCV's layout (T, S, S, 3)
        images = np.ascontiguousarray(self.shots_x.detach().float().cpu().numpy().transpose(0, 2, 3, 1))
        out = []
        for n, p in enumerate(points):
            keep = np.arange(len(images))
            if exclude is not None and len(images) > 1:
                keep = keep[keep != exclude[n]]
            out.append(texture_array(images[keep], self.shots_points[keep], p))
        return torch.from_numpy(np.stack(out)).to(self.psi.device)

    @property
    def image_size(self) -> int:
        """Side of the frames this person renders."""
        return self.G.cfg.image_size

    def prepare_for_inference(self) -> Person:
        """Eval mode and spectral norms baked into plain weights (idempotent)."""
        for net in (self.G, self.D):
            if net is not None:
                bake_spectral_norm(net.eval()).to(memory_format=torch.channels_last)
        self.psi = self.psi.detach()
        self.w = None if self.w is None else self.w.detach()
        return self

    @torch.inference_mode()
    def render_tensor(self, y: torch.Tensor, precision: str = "fp32",
                      texture: torch.Tensor | None = None) -> torch.Tensor:
        """Landmark images (N, 3, S, S) in [-1, 1] -> frames (N, 3, S, S) in [-1, 1].

        ``precision`` fp16/bf16 runs G under autocast (fp16 on CUDA only). A texture model needs
        ``texture`` (from ``textures``).
        """
        dev = self.psi.device
        dtype = autocast_dtype(precision, dev)
        tex = None if texture is None else texture.to(dev)
        if dtype is None:
            return self.G(y.to(dev), psi=self.psi, texture=tex)
        with torch.autocast(dev.type, dtype=dtype):
            return self.G(y.to(dev), psi=self.psi, texture=tex).float()

    def render(self, points: np.ndarray, batch_size: int = 8, precision: str = "fp32") -> np.ndarray:
        """Landmarks (N, 68, 2) in crop pixels -> frames (N, S, S, 3) uint8."""
        frames = []
        for k in range(0, len(points), batch_size):
            chunk = points[k:k + batch_size]
            y = landmark_batch(chunk, self.image_size)
            frames.append(to_uint8(self.render_tensor(y, precision, self.textures(chunk))))
        return np.concatenate(frames) if frames else np.zeros((0, self.image_size,
                                                                self.image_size, 3), np.uint8)

    def realism(self, frames: np.ndarray, points: np.ndarray) -> np.ndarray:
        """r per frame with this person's identity vector w'."""
        if self.D is None:
            raise BadInputError("this person was made for rendering only, without D: load the model "
                                "with its discriminator to score realism")
        return realism_score(self.D, frames, points, identity=self.w)

    def to(self, device: str | torch.device) -> Person:
        """Move every tensor to ``device``."""
        self.G.to(device)
        self.psi = self.psi.to(device)
        if self.D is not None:
            self.D.to(device)
            self.w = self.w.to(device)
        if self.shots_x is not None:
            self.shots_x = self.shots_x.to(device)
        return self


def init_person(model: TalkingHeadModel, x: torch.Tensor, y: torch.Tensor,
                points: np.ndarray | None = None) -> Person:
    """Feed-forward person from T shots: psi' = P e_hat_NEW, w' = w_0 + e_hat_NEW (sec. 3.3).

    ``points`` (T, 68, 2): the shots' landmarks in crop pixels, which a texture model needs.
    """
    if model.cfg.texture and points is None:
        raise BadInputError("a texture model needs the shots' landmarks to make a person")
    with torch.no_grad():
        e_hat = model.E(x[None], y[None])  # (1, embed_dim), the mean over the T shots
        psi = model.G.project(e_hat)
        w = None if model.D is None else (model.D.w_0 + e_hat[0]).clone()
    # Fresh modules rather than deep copies: a deep copy shares spectral norm's per-module
    # parametrized class with the original, so baking the copy would strip the original's weights.
    dev = psi.device
    G = Generator(model.cfg)
    G.load_state_dict(model.G.state_dict())
    D = None
    if model.D is not None:
        D = Discriminator(model.cfg)
        D.load_state_dict(model.D.state_dict())
        D = D.to(dev)
    shots = (x.detach().clone(), np.asarray(points, np.float32)) if model.cfg.texture else (None, None)
    return Person(G.to(dev), psi.clone(), D, w, {"e_hat": e_hat[0].tolist()}, *shots)


def person_from_sources(checkpoint: str | Path, sources: list[str | Path], shots: int | None = None,
                        device: str = "cpu") -> Person:
    """A feed-forward person straight from a meta checkpoint and source pictures/videos (no file)."""
    from generator.faces.shots import load_shots
    from generator.training.finetune import make_person  # (0 steps: no training code runs)

    model, meta = load_meta_model(checkpoint, device)
    shot_set = load_shots(sources, model.cfg.image_size, shots)
    person = make_person(model, shot_set)
    person.meta.update({"preset": meta.get("preset"), "mode": "feed-forward",
                        "shots": len(shot_set), "sources": shot_set.origins})
    return person


def load_person(path: str | Path, device: str = "cpu") -> Person:
    """Load a person file written by ``sfumato finetune`` (self-contained: no meta checkpoint)."""
    ck = load_checkpoint(path, kind="person")
    try:
        cfg = ModelConfig(**ck.meta["model"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: person metadata lacks a usable model config") from exc
    G, D = Generator(cfg), Discriminator(cfg)
    ck.load_module("G", G)
    ck.load_module("D", D)
    for key in ("psi", "w") + (("shots_x", "shots_points") if cfg.texture else ()):
        if key not in ck.tensors:
            raise CheckpointError(f"{path}: person file lacks {key}")
    shots = ((ck.tensors["shots_x"].float(), ck.tensors["shots_points"].numpy()) if cfg.texture
             else (None, None))
    person = Person(G, ck.tensors["psi"], D, ck.tensors["w"], ck.meta, *shots)
    return person.to(device).prepare_for_inference()
