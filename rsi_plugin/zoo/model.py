"""A small torchvision ResNet: resnet18's layout at a fraction of its width.

:class:`TinyResNet` is a :class:`torchvision.models.resnet.ResNet` built from
:class:`~torchvision.models.resnet.BasicBlock` with layers ``[2, 2, 2, 2]``, the stem
(7x7 stride-2 conv, max pool) and the module names of resnet18 (``conv1``, ``bn1``,
``relu``, ``maxpool``, ``layer1`` .. ``layer4``, ``avgpool``, ``fc``), but stage widths
``w, 2w, 4w, 8w`` (16 / 32 / 64 / 128 for the default ``w = 16``) instead of
64 / 128 / 256 / 512. On 64 px inputs the four stages see 16, 8, 4 and 2 px maps.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from rsi_plugin.errors import RSIError

__all__ = ["TinyResNet", "build_tiny_resnet"]


class TinyResNet(ResNet):
    r"""resnet18 with base width ``width`` (a real :class:`torchvision.models.ResNet`).

    Args:
        width (int): channels of ``conv1`` and ``layer1``; later stages double it.
            Default 16.
        num_classes (int): outputs of ``fc``. Default 10.
        torchvision_init (bool): re-initialise as torchvision does (Kaiming-normal convs,
            BatchNorm weight 1 and bias 0); ``False`` keeps PyTorch's default initialisation
            of each module. Default True.

    Shapes:
        input ``[N, 3, H, W]`` (normalised images; 64 px for the bundled model),
        output ``[N, num_classes]`` logits.
    """

    def __init__(self, width: int = 16, num_classes: int = 10, torchvision_init: bool = True) -> None:
        if width < 1:
            raise RSIError(f"width must be >= 1, got {width}")
        # ResNet.__init__ hard-codes widths 64..512, so set up what ResNet._make_layer
        # reads and build the same modules in the same order, at width ``width``.
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * BasicBlock.expansion, num_classes)
        self.width = width
        if not torchvision_init:
            return
        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def build_tiny_resnet(width: int = 16, num_classes: int = 10) -> ResNet:
    r"""A randomly initialised :class:`TinyResNet` (seed torch's global RNG beforehand
    for a reproducible initialisation, e.g. ``torch.manual_seed(0)``).

    Args:
        width (int): base width (channels of the first stage). Default 16.
        num_classes (int): number of classes. Default 10.

    Returns:
        :class:`torchvision.models.resnet.ResNet` (a :class:`TinyResNet`) in train mode.
    """
    return TinyResNet(width=width, num_classes=num_classes)
