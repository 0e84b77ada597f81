r"""A positive control: a small ResNet whose scale-invariant channels are planted by construction.

:func:`build_planted` (``rsi.load_model("planted")``) builds, from code alone (no weights file,
no random draw), a real :class:`torchvision.models.ResNet` (:class:`PlantedResNet`) with one
residual block, ``"1.0"`` (:data:`PLANTED_BLOCK`), of 28 channels. In 4 of them
(:data:`PLANTED_CHANNELS` = 2, 9, 16, 23) the paper's picture of scale invariance holds by
construction: In answers to a blob, Pre to the same blob at twice the size, Post =
ReLU(In + Pre) to both. The other 24 fail the criteria in known ways. The scan of §3 finds
exactly the planted ones (``tests/zoo/test_planted.py``); a random re-initialisation of the
same architecture (:func:`rsi_plugin.core.randomize.randomized_copy`) has nothing planted: its
channels, the planted indices included, pass only at the chance rate of an untrained network
(measured: 0-5 of 28 channels per copy, a planted index in at most one of eight copies).

**Construction.** Input: 24 px grey-scale images (the three colours equal), normalised with
mean and standard deviation 0.5, so ``x = 2 image - 1`` lies in [-1, 1]. Three radial filters
of 11 x 11 (:func:`kernels`), zero-sum (a uniform image gives 0) and scaled so that their best
image (the sign pattern of the filter) gives 1:

* ``S``, the small blob: +1 on ``d <= 2`` (:data:`SMALL_RADIUS`), a negative ring on ``2 < d <= 4``;
* ``L``, the large blob: +1 on ``d <= 4`` (:data:`LARGE_RADIUS`), a negative ring on ``4 < d <= 6``
  (``d`` the distance in pixels from the filter's centre): ``S`` zoomed twice;
* ``E``, a vertical edge: +1 right of the centre, -1 left of it (``d <= 5``).

The stem (``conv1``: 3 -> 6 channels, 11 x 11, stride 4, padding 5; ``bn1`` the identity;
``relu``; ``maxpool`` the identity) computes each filter twice, ``relu(k . x)`` and
``relu(-k . x)``, whose difference is the linear response ``k . x``. Block ``"1.0"`` is a
torchvision :class:`~torchvision.models.resnet.BasicBlock` 6 -> 28 with a downsample (1 x 1 conv
and BatchNorm); its 3 x 3 convs use their centre taps only and its BatchNorms are identities
(``bn2`` with a bias), so at every position of its 6 x 6 maps

* In_c (the downsample's output) ``= g_in (k_in . x)``,
* Pre_c (``bn2``'s output) ``= g_pre (k_pre . x) + b``,
* Post_c (the block's output) ``= relu(In_c + Pre_c)``,

with ``k_in, g_in, k_pre, g_pre, b`` per channel in :data:`CHANNELS`. The centre neuron
``(3, 3)`` of the maps looks at pixel ``(12, 12)``. Ideally the FZ of In_c is the sign pattern
of ``g_in k_in`` (for ``S``: a bright disc of radius 2 on black), its ``S`` (2x zoom) the sign
pattern of ``L``, which is the FZ of Pre_c. The known answer, per channel (``expected`` in
:data:`CHANNELS`):

* 2, 9, 16, 23 (planted): In ``S``, Pre ``L`` (bright: 2, 23; dark: 9, 16; gains 1, 1, 2 and
  0.8 / 1 with a bias of -0.05): **pass**, Pre(S(x_in)) about 0.5 above Pre(x_in) about 0.2,
  Post ratio about 0.9-1.15;
* 3, 6, 10, 13, 18, 21, 25, 27 (opposed): In ``S``, Pre ``-L``: fail Eq. 1, Pre falls when the
  blob is zoomed (these are the classifier's small-blob evidence);
* 0, 19, 24 (same scale): ``L`` / ``L`` or ``S`` / ``S``: fail Eq. 1, the zoomed blob is too large
  for Pre;
* 1, 15 (reversed): In ``L``, Pre ``S``: fail Eq. 1, Pre is the smaller blob;
* 7, 22 (edge Pre) and 17 (edge In): fail Eq. 1, a negative bias keeps Pre(S(x_in)) < 0;
* 5, 20 (weak In), 8, 26 (strong In), 12 (weak Pre): fail Eq. 2, Post(x_in) / Post(x_pre) far
  from 1;
* 14 (silenced, Pre bias -0.8): fail Eq. 1 and Eq. 2 (Post(x_in) = 0);
* 4 (Pre = 0), 11 (In = 0): undetermined, a dead FZ.

Measured with the library's default FZ settings and with :data:`PLANTED_FZ` (faster), three
FZ seeds each: every channel's verdict is the expected one.

**Scan settings.** The library's default :class:`~rsi_plugin.featureviz.optimize.FeatureVizConfig`
works (the paper's jitter scaled to 24 px is 2, i.e. scale and rotation only); its FZs
plateau after 200-450 steps. :data:`PLANTED_FZ` (``FeatureVizConfig(**PLANTED_FZ)``: Adam's
learning rate 0.2 and a plateau window of 32 steps) gives the same verdicts in 100-160 steps,
about a third of the time; the tests scan with it. No threshold or criterion is changed.

**The classifier (the Eq. 3 positive control).** ``avgpool`` is :class:`CenterNeuron` (the
centre neuron of each Post channel, what the criteria read) and ``fc`` gives three classes,
:data:`CLASSES` ``("none", "bright blob", "dark blob")``, with logit 0 for "none" and, per
polarity,

    logit = mean_q Post_q + strength * 2 * (mean_p Post_p / gain_p - 0.085) - 0.06

over the small-blob-only channels ``q`` of that polarity (:data:`SMALL_CHANNELS`, the
"opposed" ones, which fail the criteria) and the planted channels ``p`` of that polarity
(``gain_p`` its larger gain; the constants are :data:`SMALL_WEIGHT`, :data:`PLANTED_WEIGHT`,
:data:`PLANTED_THRESHOLD`, :data:`THRESHOLD`). :func:`planted_data` draws grey images, half
without a blob, a quarter with a bright and a quarter with a dark blob of radius 1.7-2.3 at
the centre neuron's pixel. At no scale the small-blob channels find the blob with or without
the planted channels; the sweep's centre crop enlarges it (radius x2 at ``p = 0.5``), the
small-blob channels fade and are silent from ``p = 0.4`` on, and only the planted channels'
Pre still answers. Mean-ablating the planted channels at Post therefore costs nothing at no
scale and every blob at the larger scales: a known scale-specific deficit. Measured with
``strength = 1`` on 400 images: about 1.0 accuracy at every scale unablated; with the planted
set ablated 1.0 at 0 % and 10 %, then falling to 0.5 (every blob missed, every blank image
right) from 40 %; random sets of the other channels cost under 1 % at any scale (the
small-blob evidence is spread over 4 channels per polarity). With ``strength = 0`` the
planted channels are not read and ablating them changes nothing. In between, the deficit at
the larger scales rises steeply from ``strength`` about 0.05 to 0.3 (where the planted term
starts to carry the enlarged blobs) and is the full one from about 0.3 on.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Mapping

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from rsi_plugin.core.modelinfo import ModelInfo
from rsi_plugin.errors import ConfigError, OutOfRangeError

__all__ = [
    "PLANTED_BLOCK", "PLANTED_CHANNELS", "SMALL_CHANNELS", "PLANTED_FZ", "CLASSES", "INPUT_SIZE", "KERNEL_SIZE",
    "STRIDE", "SMALL_RADIUS", "LARGE_RADIUS", "CHANNELS", "ChannelSpec", "CenterNeuron", "PlantedResNet",
    "kernels", "build_planted", "planted_data", "PlantedDataset", "pattern_image",
]

logger = logging.getLogger(__name__)

#: side of the model's (square) input images
INPUT_SIZE: int = 24
#: side of the stem's radial filters
KERNEL_SIZE: int = 11
#: stride of the stem: block maps are ``INPUT_SIZE // STRIDE`` = 6 px, the centre neuron (3, 3)
#: looks at pixel (12, 12)
STRIDE: int = 4
#: the small blob: radius of the disc ``S`` responds to (its surround reaches ``2 *`` this)
SMALL_RADIUS: float = 2.0
#: the large blob: radius of the disc ``L`` responds to (``2 * SMALL_RADIUS``); surround to 6
LARGE_RADIUS: float = 4.0
LARGE_SURROUND: float = 6.0
#: the block whose channels are planted
PLANTED_BLOCK: str = "1.0"
#: the FZ settings the planted control is scanned with: ``FeatureVizConfig(**PLANTED_FZ)``
#: (the rest the library's defaults). The defaults give the same verdicts, about 3x slower.
PLANTED_FZ: Mapping[str, Any] = MappingProxyType({"lr": 0.2, "plateau_window": 32})

Kernel = Literal["S", "L", "E"]
#: the stem's filters, in order; the stem computes each twice: ``relu(k . x)``, ``relu(-k . x)``
KERNEL_NAMES: tuple[str, ...] = ("S", "L", "E")
#: the planted classifier's classes (labels 0, 1, 2)
CLASSES: tuple[str, ...] = ("none", "bright blob", "dark blob")


@dataclass(frozen=True)
class ChannelSpec:
    r"""One channel of the planted block: In = ``in_gain * (k_in . x)``, Pre =
    ``pre_gain * (k_pre . x) + pre_bias`` at every position (``x`` the normalised image).

    Attributes:
        role (str): what the channel is (``"planted"``, ``"reversed"``, ...).
        in_kernel (str or None): ``"S"``, ``"L"``, ``"E"`` or ``None`` (In = 0).
        in_gain (float): gain of In (negative: the dark version of the pattern).
        pre_kernel (str or None): likewise for Pre.
        pre_gain (float): gain of Pre.
        pre_bias (float): bias of Pre (``bn2``'s bias).
        expected (str): the scan's verdict by construction: ``"pass"``, ``"fail"`` or
            ``"undetermined"`` (a dead FZ).
        reason (str): why, in words.
    """

    role: str
    in_kernel: Kernel | None
    in_gain: float
    pre_kernel: Kernel | None
    pre_gain: float
    pre_bias: float
    expected: str
    reason: str


def _spec(role, k_in, g_in, k_pre, g_pre, bias, expected, reason) -> ChannelSpec:
    return ChannelSpec(role, k_in, float(g_in), k_pre, float(g_pre), float(bias), expected, reason)


#: the 28 channels of the planted block (index = channel)
CHANNELS: tuple[ChannelSpec, ...] = (
    _spec("same scale", "L", 1, "L", 1, 0, "fail", "Pre falls when the large blob is zoomed further (Eq. 1)"),
    _spec("reversed", "L", 1, "S", 1, -0.2, "fail", "In large, Pre small: Pre falls with scale (Eq. 1)"),
    _spec("planted", "S", 1, "L", 1, 0, "pass", "In a small bright blob, Pre the same blob at twice the size"),
    _spec("opposed", "S", 1, "L", -1, 0, "fail", "Pre answers to the small blob, against the large one (Eq. 1)"),
    _spec("Pre zero", "S", 1, None, 0, 0, "undetermined", "Pre is 0: its FZ is dead"),
    _spec("weak In", "S", 0.25, "L", 1, 0, "fail", "Post(x_in) far below Post(x_pre) (Eq. 2)"),
    _spec("opposed", "S", -1, "L", 1, 0, "fail", "dark: Pre against the large blob (Eq. 1)"),
    _spec("edge Pre", "S", 1, "E", 1, -0.6, "fail", "Pre is an edge detector, silent on the zoomed blob (Eq. 1)"),
    _spec("strong In", "S", 3, "L", 1, 0, "fail", "Post(x_in) far above Post(x_pre) (Eq. 2)"),
    _spec("planted", "S", -1, "L", -1, 0, "pass", "the dark blob: In small, Pre twice the size"),
    _spec("opposed", "S", 1, "L", -0.6, 0, "fail", "Pre against the large blob (Eq. 1)"),
    _spec("In zero", None, 0, "L", 1, 0, "undetermined", "In is 0: its FZ is dead"),
    _spec("weak Pre", "S", 1, "L", 0.2, 0, "fail", "Post(x_in) far above Post(x_pre) (Eq. 2)"),
    _spec("opposed", "S", -0.8, "L", 1, 0, "fail", "dark: Pre against the large blob (Eq. 1)"),
    _spec("silenced", "S", 1, "L", 1, -0.8, "fail", "a negative bias: Post(x_in) = 0 and Pre(S(x_in)) < 0"),
    _spec("reversed", "L", -1, "S", -1, -0.2, "fail", "dark: In large, Pre small (Eq. 1)"),
    _spec("planted", "S", -2, "L", -2, 0, "pass", "the dark blob at twice the gain"),
    _spec("edge In", "E", 1, "L", 1, -0.3, "fail", "In is an edge: its zoom does not drive the blob Pre (Eq. 1)"),
    _spec("opposed", "S", 0.8, "L", -1, 0, "fail", "Pre against the large blob (Eq. 1)"),
    _spec("same scale", "S", 1, "S", 1, 0, "fail", "Pre falls when the small blob is zoomed (Eq. 1)"),
    _spec("weak In", "S", -0.25, "L", -1, 0, "fail", "dark: Post(x_in) far below Post(x_pre) (Eq. 2)"),
    _spec("opposed", "S", -1, "L", 0.6, 0, "fail", "dark: Pre against the large blob (Eq. 1)"),
    _spec("edge Pre", "S", 1, "E", -1, -0.6, "fail", "Pre the mirrored edge, silent on the zoomed blob (Eq. 1)"),
    _spec("planted", "S", 0.8, "L", 1, -0.05, "pass", "the bright blob with a weaker In and a small negative bias"),
    _spec("same scale", "L", -1, "L", -1, 0, "fail", "dark: Pre falls when the large blob is zoomed further (Eq. 1)"),
    _spec("opposed", "S", 1.2, "L", -0.8, 0, "fail", "Pre against the large blob (Eq. 1)"),
    _spec("strong In", "S", -3, "L", -1, 0, "fail", "dark: Post(x_in) far above Post(x_pre) (Eq. 2)"),
    _spec("opposed", "S", -1.2, "L", 0.8, 0, "fail", "dark: Pre against the large blob (Eq. 1)"),
)

#: the planted (scale-invariant by construction) channels of :data:`PLANTED_BLOCK`
PLANTED_CHANNELS: tuple[int, ...] = tuple(i for i, c in enumerate(CHANNELS) if c.role == "planted")
#: channels whose Post answers to the small blob only (In = S, Pre = -L, or the dark versions):
#: the classifier's evidence at no scale
SMALL_CHANNELS: tuple[int, ...] = tuple(i for i, c in enumerate(CHANNELS) if c.role == "opposed")


def _distance(size: int = KERNEL_SIZE) -> tuple[Tensor, Tensor]:
    """``(x, d)`` of a ``size x size`` kernel: column offset and distance from its centre."""
    c = size // 2
    y, x = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    return x.double(), (x ** 2 + y ** 2).double().sqrt()


def _blob(radius: float, surround: float) -> Tensor:
    _, d = _distance()
    disc = (d <= radius).double()
    ring = ((d > radius) & (d <= surround)).double()
    return disc - ring * disc.sum() / ring.sum()


def kernels() -> dict[str, Tensor]:
    r"""The stem's radial filters, each ``[KERNEL_SIZE, KERNEL_SIZE]`` float64, zero-sum (a
    uniform image gives 0) and scaled to ``sum |k| = 1`` (its best image in [-1, 1], the
    sign pattern of ``k``, gives 1).

    Returns:
        dict: ``"S"`` (small blob: +1 on ``d <= 2``, a negative ring on ``2 < d <= 4``),
        ``"L"`` (large blob: +1 on ``d <= 4``, a negative ring on ``4 < d <= 6``) and
        ``"E"`` (vertical edge: +1 on ``x > 0``, -1 on ``x < 0``, ``d <= 5``).
    """
    x, d = _distance()
    out = {"S": _blob(SMALL_RADIUS, 2 * SMALL_RADIUS), "L": _blob(LARGE_RADIUS, LARGE_SURROUND),
           "E": torch.sign(x) * (d <= KERNEL_SIZE // 2)}
    return {k: v / v.abs().sum() for k, v in out.items()}


class CenterNeuron(nn.Module):
    r"""The centre neuron ``(H // 2, W // 2)`` of every channel, as ``[N, C, 1, 1]``: the
    planted model's ``avgpool``, so that its classifier reads what the criteria read."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, x.shape[2] // 2, x.shape[3] // 2, None, None]


class PlantedResNet(ResNet):
    r"""The planted model's architecture (a real :class:`torchvision.models.ResNet`), randomly
    initialised as torchvision initialises a ResNet; :func:`build_planted` writes the planted
    weights into it.

    ``conv1`` (``3 -> 6``, :data:`KERNEL_SIZE` x :data:`KERNEL_SIZE`, stride :data:`STRIDE`,
    padding ``KERNEL_SIZE // 2``), ``bn1``, ``relu``, ``maxpool`` (the identity), ``layer1`` =
    one :class:`~torchvision.models.resnet.BasicBlock` ``6 -> 28`` with a downsample (1 x 1
    conv + BatchNorm), ``layer2``..``layer4`` empty (``nn.Sequential()``, so torchvision's
    ``forward`` runs unchanged), ``avgpool`` a :class:`CenterNeuron`, ``fc`` ``28 -> 3``.
    Block ``"1.0"`` is the only residual block.

    Args:
        num_classes (int): outputs of ``fc``. Default 3.

    Attributes:
        planted_block (str): :data:`PLANTED_BLOCK`.
        planted_channels (tuple of int): :data:`PLANTED_CHANNELS`.

    Shapes:
        input ``[N, 3, 24, 24]`` (normalised with mean and std 0.5), output ``[N, num_classes]``.
    """

    planted_block: str = PLANTED_BLOCK
    planted_channels: tuple[int, ...] = PLANTED_CHANNELS

    def __init__(self, num_classes: int = 3) -> None:
        nn.Module.__init__(self)
        stem = 2 * len(KERNEL_NAMES)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = stem
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, stem, KERNEL_SIZE, stride=STRIDE, padding=KERNEL_SIZE // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(BasicBlock, len(CHANNELS), 1)
        self.layer2 = nn.Sequential()
        self.layer3 = nn.Sequential()
        self.layer4 = nn.Sequential()
        self.avgpool = CenterNeuron()
        self.fc = nn.Linear(len(CHANNELS), num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


#: the classifier (see the module docstring): weight of the mean small-blob-only Post, weight of
#: the mean planted Post (times strength), the threshold and the planted channels' threshold
SMALL_WEIGHT: float = 1.0
PLANTED_WEIGHT: float = 2.0
THRESHOLD: float = 0.06
PLANTED_THRESHOLD: float = 0.085


def _gain(spec: ChannelSpec) -> float:
    return max(abs(spec.in_gain), abs(spec.pre_gain))


def _identity_bn(bn: nn.BatchNorm2d) -> None:
    bn.weight.fill_(1.0)
    bn.bias.zero_()
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(var + eps) = x


def _check_strength(strength: float) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
            or strength < 0:
        raise ConfigError(f"strength must be a finite number >= 0 (0: the classifier ignores the planted "
                          f"channels, 1: the default), got {strength!r}")
    return float(strength)


@torch.no_grad()
def build_planted(strength: float = 1.0, device: str | torch.device = "cpu") -> PlantedResNet:
    r"""The planted model (see the module docstring), built deterministically by code.

    Args:
        strength (float): how much the classifier relies on the planted channels, >= 0:
            each blob logit adds ``strength * PLANTED_WEIGHT * (mean_p Post_p / gain_p -
            PLANTED_THRESHOLD)`` over the planted channels of its polarity. 0: they are not
            read (ablating them changes nothing); 1 (default): at the sweep's larger scales
            only they find the blob. The deficit rises steeply from about 0.05 to 0.3.
        device (str or torch.device): where the model goes.

    Returns:
        :class:`PlantedResNet` in eval mode with ``rsi_info`` (name ``"planted"``, weights
        ``"constructed:strength=<s>"``, input 24, resize 24, mean and std 0.5, 3 classes),
        ``strength``, ``planted_block`` and ``planted_channels``.

    Raises:
        ConfigError: a strength that is not a finite number >= 0.
    """
    strength = _check_strength(strength)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the random init is overwritten below; seeded for repeatability
        model = PlantedResNet()
    ks = kernels()
    block = model.layer1[0]
    for p in model.parameters():
        p.zero_()
    for bn in (model.bn1, block.bn1, block.bn2, block.downsample[1]):
        _identity_bn(bn)
    for i, name in enumerate(KERNEL_NAMES):  # stem: relu(k . x) and relu(-k . x), k summed over colours
        k = (ks[name] / 3).float()
        model.conv1.weight[2 * i] = k
        model.conv1.weight[2 * i + 1] = -k
    for j in range(2 * len(KERNEL_NAMES)):  # mid channel j = stem channel j (>= 0: relu keeps it)
        block.conv1.weight[j, j, 1, 1] = 1.0
    shortcut = block.downsample[0]
    for c, spec in enumerate(CHANNELS):  # k . x = relu(k . x) - relu(-k . x)
        if spec.in_kernel is not None:
            i = KERNEL_NAMES.index(spec.in_kernel)
            shortcut.weight[c, 2 * i, 0, 0] = spec.in_gain
            shortcut.weight[c, 2 * i + 1, 0, 0] = -spec.in_gain
        if spec.pre_kernel is not None:
            i = KERNEL_NAMES.index(spec.pre_kernel)
            block.conv2.weight[c, 2 * i, 1, 1] = spec.pre_gain
            block.conv2.weight[c, 2 * i + 1, 1, 1] = -spec.pre_gain
        block.bn2.bias[c] = spec.pre_bias
    # the classifier: class 0 "none", 1 "bright blob", 2 "dark blob"; logit 0 is 0
    for label, sign in ((1, 1.0), (2, -1.0)):
        small = [c for c in SMALL_CHANNELS if math.copysign(1.0, CHANNELS[c].in_gain) == sign]
        planted = [c for c in PLANTED_CHANNELS if math.copysign(1.0, CHANNELS[c].in_gain) == sign]
        for c in small:
            model.fc.weight[label, c] = SMALL_WEIGHT / len(small)
        for c in planted:
            model.fc.weight[label, c] = strength * PLANTED_WEIGHT / (len(planted) * _gain(CHANNELS[c]))
        model.fc.bias[label] = -THRESHOLD - strength * PLANTED_WEIGHT * PLANTED_THRESHOLD
    model.strength = strength
    logger.debug("built the planted model (strength %g)", strength)
    model.rsi_info = ModelInfo(name="planted", weights=f"constructed:strength={strength:g}", input_size=INPUT_SIZE,
                               resize_size=INPUT_SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), num_classes=len(CLASSES))
    return model.to(device).eval()


#: the data: background grey level, disc contrast and radius ranges, pixel noise
BACKGROUND: tuple[float, float] = (0.35, 0.65)
CONTRAST: tuple[float, float] = (0.25, 0.35)
RADIUS: tuple[float, float] = (1.7, 2.3)
NOISE: float = 0.03
#: the labels of images 0, 1, 2, 3, then again: half the images have no blob
LABEL_CYCLE: tuple[int, ...] = (0, 1, 0, 2)
#: subpixels per side when a disc is drawn (its edge pixels get their covered fraction)
SUPERSAMPLE: int = 4


def _check_count(n: int, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {n!r}")
    return n


def _coverage(radius: Tensor, size: int, center: float) -> Tensor:
    """``[n, size, size]`` fraction of each pixel inside a disc of ``radius`` about
    ``(center, center)`` (pixel centres at integers)."""
    k = SUPERSAMPLE
    offsets = (torch.arange(k, dtype=torch.float64) + 0.5) / k - 0.5
    pos = (torch.arange(size, dtype=torch.float64)[:, None] + offsets[None, :]).reshape(-1) - center
    d2 = pos[:, None] ** 2 + pos[None, :] ** 2  # [size k, size k]
    inside = (d2[None] <= radius.double()[:, None, None] ** 2).double()
    return inside.reshape(-1, size, k, size, k).mean((2, 4))


def pattern_image(radius: float, polarity: int = 1, size: int = INPUT_SIZE, background: float = 0.5,
                  contrast: float = 0.5) -> Tensor:
    r"""One noiseless grey image of the planted pattern: a disc of ``radius`` at the centre
    neuron's pixel ``(size // 2, size // 2)``.

    Args:
        radius (float): disc radius in pixels (``SMALL_RADIUS``: what In of the planted
            channels answers to; ``LARGE_RADIUS``: what Pre answers to).
        polarity (int): 1 bright disc, -1 dark disc.
        size (int): image side.
        background (float): grey level of the background, in [0, 1].
        contrast (float): the disc is ``background + polarity * contrast`` (clipped to [0, 1]).

    Returns:
        Tensor ``[3, size, size]`` in [0, 1].
    """
    if polarity not in (1, -1):
        raise ConfigError(f"polarity must be 1 (bright) or -1 (dark), got {polarity!r}")
    cover = _coverage(torch.tensor([float(radius)]), int(size), float(size // 2))[0]
    image = (background + polarity * contrast * cover).clamp(0, 1).float()
    return image.expand(3, size, size).clone()


def planted_data(n: int, seed: int = 0, size: int = INPUT_SIZE) -> tuple[Tensor, Tensor]:
    r"""The planted classifier's labelled data: ``n`` grey images, half with a blob.

    Class 1 ("blob"): a disc of radius uniform in :data:`RADIUS` (about the small blob the
    planted channels' In answers to) at pixel ``(size // 2, size // 2)``, bright or dark
    (alternating), contrast uniform in :data:`CONTRAST`, on a uniform background of grey
    level uniform in :data:`BACKGROUND`. Class 0 ("no blob"): the background alone. Every
    image gets Gaussian pixel noise of standard deviation :data:`NOISE` (the same on the
    three colours) and is clipped to [0, 1]. Labels alternate 0, 1, 0, 1, ...

    The blob sits at the centre, so the §4 sweep's centre crop enlarges it: at ``p = 0.5``
    its radius doubles, to what Pre of the planted channels answers to. Deterministic in
    ``(n, seed, size)`` (a CPU generator), and image ``i`` does not depend on ``n``.

    Args:
        n (int): number of images.
        seed (int): seed.
        size (int): image side (the model's input and resize size, 24).

    Returns:
        ``(images [n, 3, size, size] float32 in [0, 1], labels [n] int64)``, ready for
        :func:`rsi_plugin.ablation.experiment.sweep` (``data=(images, labels)``).

    Raises:
        ConfigError: ``n`` or ``seed`` not an integer >= 0, ``size`` below 16.
    """
    _check_count(n)
    _check_count(seed, "seed")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ConfigError(f"size must be an integer >= 16, got {size!r}")
    labels = torch.tensor(LABEL_CYCLE, dtype=torch.int64).repeat(n // len(LABEL_CYCLE) + 1)[:n]
    if n == 0:
        return torch.zeros(0, 3, size, size), labels
    g = torch.Generator().manual_seed(int(seed))
    # image by image, the same draws in the same order: image i does not depend on n
    draws = torch.stack([torch.rand(3 + size * size, generator=g, dtype=torch.float64) for _ in range(n)])
    u = draws[:, :3]
    noise = NOISE * math.sqrt(2.0) * torch.erfinv(2 * draws[:, 3:].clamp(1e-12, 1 - 1e-12) - 1).view(n, size, size)
    background = BACKGROUND[0] + (BACKGROUND[1] - BACKGROUND[0]) * u[:, 0]
    contrast = CONTRAST[0] + (CONTRAST[1] - CONTRAST[0]) * u[:, 1]
    radius = RADIUS[0] + (RADIUS[1] - RADIUS[0]) * u[:, 2]
    polarity = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)[labels]  # none, bright, dark
    cover = _coverage(radius, size, float(size // 2))
    grey = background[:, None, None] + (polarity * contrast)[:, None, None] * cover + noise
    images = grey.clamp(0, 1).float()[:, None].expand(n, 3, size, size).contiguous()
    return images, labels


class PlantedDataset(torch.utils.data.Dataset):
    r""":func:`planted_data` as a Dataset of ``(image [3, size, size], label)``, drawn once.

    Args:
        n (int): number of images.
        seed (int): seed.
        size (int): image side.
    """

    def __init__(self, n: int, seed: int = 0, size: int = INPUT_SIZE) -> None:
        self.images, self.labels = planted_data(n, seed, size)
        self.n, self.seed, self.size = n, seed, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise OutOfRangeError(f"index {i} out of range for {self.n} images")
        return self.images[i], int(self.labels[i])

    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(images [n, 3, size, size], labels [n])``, copies."""
        return self.images.clone(), self.labels.clone()
