"""Model and training configuration: frozen dataclasses and a registry of named presets.

``paper`` is the 256 px architecture of Zakharov et al. 2019 (E ~15M, G ~38M with P, D ~20M
parameters) and ``small`` a narrower 128 px one that trains on a CPU: both are the paper's pure G,
which paints every pixel from landmarks and identity. ``texture128`` / ``texture256`` add the texture
path (G refines the source warped to the driving landmarks; see generator/model/generator.py).
``test_tiny`` and ``test_texture`` are for unit tests. Any power-of-two image size
from 64 to 512 works: channel widths follow the paper's rule at every size (see ``channels_at``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from generator.errors import SfumatoError

D_TRUNKS = ("conv", "lite0")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes of E, G and D."""

    image_size: int = 256  # frames and landmark images are image_size x image_size
    base_channels: int = 64  # width of the first down block (at image_size / 2)
    max_channels: int = 512  # width cap; also the embedding size (E ends at 4x4 with this width)
    res_blocks: int = 5  # AdaIN residual blocks in G's bottleneck (paper: 4-5)
    attention: bool = True  # self-attention at image_size/8 (E, D, G down) and image_size/4 (G up)
    num_videos: int = 1  # columns of D's projection matrix W (one per training video)
    # The texture path (not in the paper): G also takes the source shot warped piecewise-affinely to
    # the driving landmarks and its validity mask, and blends its own RGB with that warp.
    texture: bool = False
    skips: bool = False  # U-Net skips in G, from each down block to the up block of the same size
    # D's trunk V: "conv", the paper's residual down blocks on frame + landmark image; "lite0", the
    # frozen ImageNet EfficientNet-Lite0 on the frame, its per-stage channel statistics linearly
    # projected (a projected discriminator, Sauer et al. 2021; not in the paper). See discriminator.py.
    d_trunk: str = "conv"

    def __post_init__(self):
        s = self.image_size
        if s < 64 or s > 512 or s & (s - 1):
            raise SfumatoError(f"image size must be a power of two from 64 to 512, got {s}")
        if self.base_channels < 2 or self.max_channels < self.base_channels:
            raise SfumatoError("need 2 <= base_channels <= max_channels")
        if self.num_videos < 1:
            raise SfumatoError(f"num_videos must be >= 1, got {self.num_videos}")
        if self.d_trunk not in D_TRUNKS:
            raise SfumatoError(f"d_trunk must be one of {', '.join(D_TRUNKS)}, got {self.d_trunk!r}")

    @property
    def embed_dim(self) -> int:
        """Size of e_hat, V(x, y) and each column of W."""
        return self.max_channels

    def channels_at(self, resolution: int) -> int:
        """Feature width at a spatial resolution: base at image_size/2, doubling per halving, capped.

        For the paper preset: 64@128, 128@64, 256@32, 512@16/8/4 (E, D, G down), and the up path
        mirrors it down to 32@256.
        """
        return min(self.max_channels, max(1, self.base_channels * self.image_size // (2 * resolution)))

    @property
    def down_resolutions(self) -> list[int]:
        """Output resolutions of E's and D's down blocks: image_size/2 ... 4."""
        return [self.image_size >> k for k in range(1, int(math.log2(self.image_size)) - 1)]

    @property
    def bottleneck(self) -> int:
        """Resolution of G's AdaIN residual blocks (16 at 256 px)."""
        return self.image_size // 16

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


# The content terms a user can choose (LossConfig.content):
CONTENT_LOSSES = {
    "lite0": "LPIPS-style distance on ImageNet EfficientNet-Lite0 features (ships with sfumato; default)",
    "lite2": "the same on EfficientNet-Lite2 (ships with sfumato; slower, larger features)",
    "vgg": "the paper's VGG19 + VGGFace L1 (needs your local weight files)",
    "none": "no perceptual term (pixel L1 only where a pixel weight is set): CPU smoke runs",
}


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the meta-learning objective (paper.md, authors' code values)."""

    content: str = "lite0"  # a key of CONTENT_LOSSES
    vgg19_weight: float = 1.5e-1  # content "vgg": the paper's VGG19 term
    vggface_weight: float = 2.5e-2  # content "vgg": the paper's VGGFace term
    feature_weight: float = 1.0  # content "lite0"/"lite2": weight of the feature distance
    # content "lite0"/"lite2": weights of the five stages (strides 2 ... 32), LPIPS's equal weights
    stage_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    fm_weight: float = 10.0  # L_FM
    match_weight: float = 80.0  # L_MCH
    pixel_weight: float = 0.0  # optional L1 on pixels (not in the paper; 0 = off)
    # Texture G: L1 of G's own painting against the target. The blend starts at the warp, so without
    # it the painting is trained only where the warp is invalid and stays noise elsewhere; a mouth a
    # closed-mouth source cannot supply was then filled with that noise (measured, MODEL_CARD.md).
    rgb_weight: float = 0.0

    def __post_init__(self):
        if self.content not in CONTENT_LOSSES:
            raise SfumatoError(f"content loss must be one of {', '.join(CONTENT_LOSSES)}, "
                               f"got {self.content!r}")
        if len(self.stage_weights) != 5:
            raise SfumatoError(f"need 5 stage weights, got {len(self.stage_weights)}")

    @property
    def feature_arch(self) -> str | None:
        """The timm architecture of a "lite0"/"lite2" content loss, else None."""
        return {"lite0": "tf_efficientnet_lite0", "lite2": "tf_efficientnet_lite2"}.get(self.content)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Meta-training hyper-parameters (paper values by default)."""

    k: int = 8  # frames per episode for the embedder (K)
    batch_size: int = 1  # episodes per step
    lr_g: float = 5e-5  # E, G and P
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.999)
    d_steps: int = 2  # discriminator updates per generator update
    steps: int = 1000
    checkpoint_every: int = 100
    sample_every: int = 100
    log_every: int = 10
    amp: str = "none"  # "none", "bf16" (CPU or CUDA), "fp16" (CUDA)
    seed: int = 0
    max_bad_steps: int = 5  # non-finite losses in a row before training stops
    # Texture G: share of episodes whose texture is the source shot farthest in pose from the target
    # (instead of the closest), so G meets open mouths and disocclusions a single shot cannot fill.
    hard_shot: float = 0.0
    losses: LossConfig = LossConfig()

    def __post_init__(self):
        if self.k < 1 or self.batch_size < 1 or self.d_steps < 0:
            raise SfumatoError("k and batch size must be >= 1, d_steps >= 0")
        if not 0.0 <= self.hard_shot <= 1.0:
            raise SfumatoError(f"hard_shot is a share in [0, 1], got {self.hard_shot}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise SfumatoError(f"amp must be none, bf16 or fp16, got {self.amp!r}")

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named model + training configuration."""

    name: str
    model: ModelConfig
    train: TrainConfig
    description: str = ""


_PRESETS: dict[str, Callable[[], Preset]] = {}


def register_preset(fn: Callable[[], Preset]) -> Callable[[], Preset]:
    """Register a preset builder under its function name."""
    if fn.__name__ in _PRESETS:
        raise SfumatoError(f"preset {fn.__name__!r} registered twice")
    _PRESETS[fn.__name__] = fn
    return fn


def list_presets() -> list[str]:
    """Names of the registered presets."""
    return sorted(_PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name lists the valid ones."""
    if name not in _PRESETS:
        raise SfumatoError(f"unknown preset {name!r}; choose from {', '.join(list_presets())}")
    return _PRESETS[name]()


@register_preset
def paper() -> Preset:
    """Zakharov et al. 2019 at 256 px (VoxCeleb setting)."""
    return Preset("paper", ModelConfig(), TrainConfig(),
                  "the paper's 256 px architecture (E 15M, G 38M, D 20M parameters)")


@register_preset
def small() -> Preset:
    """128 px, a quarter of the paper's width: meta-trains on a CPU in hours."""
    return Preset(
        "small",
        ModelConfig(image_size=128, base_channels=32, max_channels=256, res_blocks=3),
        TrainConfig(k=4, checkpoint_every=200, sample_every=200),  # K = 4: half the embedder cost
        "128 px, narrow; trains on a CPU",
    )


def _texture_train(k: int) -> TrainConfig:
    # Measured choices for a CPU-sized corpus: the authors' later L_MCH weight (10), a small pixel
    # L1 beside the feature loss (the Lite features are unit-normalised, so they barely see a
    # colour cast), one D step per G step (D is calibrated afterwards, see MODEL_CARD.md), G's
    # painting trained on its own and a third of the textures from the hardest shot (see above).
    return TrainConfig(k=k, lr_g=1e-4, lr_d=4e-4, d_steps=1, checkpoint_every=200, sample_every=200,
                       hard_shot=0.35,
                       losses=LossConfig(content="lite0", pixel_weight=2.0, match_weight=10.0,
                                         rgb_weight=1.0))


@register_preset
def texture128() -> Preset:
    """The texture path at 128 px (small's widths, U-Net skips): the bundled model's preset."""
    return Preset(
        "texture128",
        ModelConfig(image_size=128, base_channels=32, max_channels=256, res_blocks=3, texture=True,
                    skips=True),
        _texture_train(k=4),
        "128 px; G refines the source warped to the driving landmarks (not the paper's G)",
    )


@register_preset
def texture256() -> Preset:
    """The texture path at 256 px with the paper's widths."""
    return Preset(
        "texture256",
        ModelConfig(texture=True, skips=True),
        _texture_train(k=8),
        "256 px, paper widths; G refines the warped source (not the paper's G)",
    )


@register_preset
def test_tiny() -> Preset:
    """64 px and a few channels: for unit tests only."""
    return Preset(
        "test_tiny",
        ModelConfig(image_size=64, base_channels=8, max_channels=32, res_blocks=1),
        TrainConfig(k=2, steps=10, checkpoint_every=5, sample_every=5, log_every=1,
                    losses=LossConfig(content="none")),
        "64 px, tiny; unit tests",
    )


@register_preset
def test_texture() -> Preset:
    """test_tiny with the texture path: for unit tests only."""
    t = test_tiny()
    return Preset("test_texture", dataclasses.replace(t.model, texture=True, skips=True), t.train,
                  "64 px, tiny, texture path; unit tests")
