r"""Lucent's image parameterisation and transform robustness, batched and seeded per element.

Feature visualisation (:mod:`rsi_plugin.featureviz.optimize`) optimises an image in Lucent's
parameterisation and shows the network a randomly transformed copy at every step. This
module holds both halves as pure tensor functions, so that each batch element (one
channel) has its own random draws:

* **Parameterisation** — as Lucent's ``param.image(size, decorrelate=True, fft=True)``:
  a real/imaginary spectrum ``[K, 3, H, W // 2 + 1 (+1 if W odd), 2]`` drawn as
  ``N(0, sd = 0.01)``, scaled by ``1 / max(|f|, 1 / max(H, W)) ** decay_power``, taken back
  with ``irfftn(norm="ortho")`` and divided by Lucid's magic 4, then colour-decorrelated
  with Lucent's matrix and squashed by a sigmoid into [0, 1]. With ``fft=False`` the
  parameter is the pixel image itself (Lucent's ``pixel_image``). Written here rather than
  imported because Lucent draws the spectrum from torch's global RNG and puts it on a
  module-global device; the numbers (the colour matrix, the frequency grid, the scale, the
  magic constant) are Lucent's, and ``tests/featureviz/test_featureviz.py`` checks our image equals
  Lucent's for the same spectrum.

* **Transforms** — the paper's code (``center_lucent_optimize.py``) applies, for jitter
  ``d >= 4``: ``pad(d)`` (reflect), ``jitter(d)``, ``random_scale([1, .975, 1.025, .95,
  1.05])``, ``random_rotate(-5..5 deg)``, ``jitter(d // 2)``, ``crop(size)`` (centre);
  for ``d < 4`` only the random scale and rotation. Lucent draws one value per call from
  numpy's global RNG, so every image of a batch gets the same draw and a batch element's
  image depends on its neighbours. Here the random draws of each element come from its
  own ``torch.Generator`` (:func:`draw_transforms`), and the pad is followed by *one*
  per-element affine resample (:func:`transform_images`) that composes jitter, scale,
  rotation, jitter and crop exactly as Lucent's steps map pixel coordinates.

Deviations from Lucent, by design (all are interpolation-level):

1. One bilinear resample of the composed map instead of Lucent's three (kornia translate,
   ``Upsample(align_corners=True)``, kornia ``warp_affine``): slightly sharper, and no
   half-pixel offset from kornia 0.4's ``align_corners=False`` sampling of matrices it
   normalises with ``align_corners=True`` conventions. Pixels whose pre-image leaves the
   (padded) image are zero, as Lucent's zero fills make them.
2. With jitter ``< 4`` Lucent's random scale above 1 hands the network a larger image
   (e.g. 236 px for 224 at 1.05); a batch needs one size, so the scaled image is
   centre-cropped back to ``size`` (the crop the ``d >= 4`` path applies anyway).
3. Lucent's ``jitter`` shifts by ``0 .. d - 1`` pixels down/right only (kornia
   ``translate``); kept as is, since it is the published behaviour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from rsi_plugin.paper import FZ_ANGLES, FZ_ZOOMS

__all__ = [
    "COLOR_CORRELATION_SVD_SQRT",
    "color_correlation_normalized",
    "rfft2d_freqs",
    "spectrum_shape",
    "init_params",
    "ImageParam",
    "PAPER_SCALES",
    "PAPER_ANGLES",
    "TransformSpec",
    "draw_transforms",
    "transform_thetas",
    "transform_images",
    "affine_grid",
]

#: Lucid's / Lucent's square root of the ImageNet colour correlation (``param/color.py``).
COLOR_CORRELATION_SVD_SQRT: tuple[tuple[float, float, float], ...] = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)

#: Lucid's "magic" divisor of the spectrum's image (``param/spatial.py`` ``fft_image``).
FFT_MAGIC = 4.0

#: the paper's code: ``random_scale([1, 0.975, 1.025, 0.95, 1.05])`` (:data:`rsi_plugin.paper.FZ_ZOOMS`;
#: zoom factors of the FZ transforms, not the sweep's scale fractions)
PAPER_SCALES: tuple[float, ...] = FZ_ZOOMS
#: the paper's code: ``random_rotate([-5, ..., 5])`` (degrees; :data:`rsi_plugin.paper.FZ_ANGLES`)
PAPER_ANGLES: tuple[float, ...] = FZ_ANGLES


def color_correlation_normalized(device: torch.device | str | None = None,
                                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Lucent's colour matrix ``[3, 3]``: the SVD square root divided by its largest column norm."""
    matrix = torch.tensor(COLOR_CORRELATION_SVD_SQRT, dtype=torch.float64)
    matrix = matrix / matrix.norm(dim=0).max()
    return matrix.to(device=device, dtype=dtype)


def rfft2d_freqs(h: int, w: int) -> torch.Tensor:
    """Spatial frequencies ``[h, w // 2 + 1]`` of a real 2-D FFT (``w // 2 + 2`` columns for
    odd ``w``, as Lucid keeps one extra frequency and cuts a pixel later)."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    cols = w // 2 + 2 if w % 2 == 1 else w // 2 + 1
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[:cols]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_shape(h: int, w: int) -> tuple[int, int, int, int]:
    """Shape of one element's spectrum parameter: ``(3, h, w // 2 + 1 [+1], 2)``."""
    return (3, h, rfft2d_freqs(h, w).shape[1], 2)


def init_params(generators: Sequence[torch.Generator], size: int, fft: bool = True,
                sd: float = 0.01) -> torch.Tensor:
    """Initial parameters, one element per generator, each drawn from its own generator.

    Args:
        generators (sequence of torch.Generator): CPU generators, one per element.
        size (int): side of the square image.
        fft (bool): spectrum ``[K, 3, size, F, 2]`` if True, else pixels ``[K, 3, size, size]``.
        sd (float): standard deviation of the draw (Lucent: 0.01).

    Returns:
        Tensor on the CPU, float32.
    """
    shape = spectrum_shape(size, size) if fft else (3, size, size)
    return torch.stack([torch.randn(shape, generator=g) * sd for g in generators])


class ImageParam:
    r"""Turn parameters into [0, 1] RGB images, as Lucent's ``param.image``.

    Args:
        size (int): side of the square image.
        fft (bool): parameters are a spectrum (True) or pixels (False).
        decorrelate (bool): apply Lucent's colour decorrelation before the sigmoid.
        decay_power (float): spectrum scale ``1 / max(|f|, 1 / size) ** decay_power``.
        device: device of the scale and colour matrix.

    Shapes:
        ``__call__``: parameters ``[K, ...]`` (see :func:`init_params`) to ``[K, 3, size, size]``.
    """

    def __init__(self, size: int, fft: bool = True, decorrelate: bool = True,
                 decay_power: float = 1.0, device: torch.device | str | None = None) -> None:
        self.size, self.fft, self.decorrelate = size, fft, decorrelate
        freqs = rfft2d_freqs(size, size)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / size) ** decay_power
        # expanded over the real/imaginary axis: a broadcast over a trailing axis of size 1
        # is ~10x slower on CPU than a plain elementwise product
        self.scale = scale.to(device=device, dtype=torch.float32)[None, None, :, :, None].expand(
            1, 1, *scale.shape, 2).contiguous()
        self.color = color_correlation_normalized(device)

    def raw(self, params: torch.Tensor) -> torch.Tensor:
        """The image before colour decorrelation and sigmoid, ``[K, 3, size, size]``."""
        if not self.fft:
            return params
        spectrum = torch.view_as_complex((self.scale * params).contiguous())
        image = torch.fft.irfftn(spectrum, s=(self.size, self.size), norm="ortho")
        return image[:, :3, :self.size, :self.size] / FFT_MAGIC

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        image = self.raw(params)
        if self.decorrelate:
            # a [3, 3] matmul over the flattened pixels: on CPU (torch 2.14, oneDNN) ~50x
            # faster forward + backward than the equivalent 1x1 convolution
            image = torch.matmul(self.color.to(image.dtype), image.flatten(2)).view_as(image)
        return torch.sigmoid(image)


@dataclass(frozen=True)
class TransformSpec:
    """The random transforms of one feature visualisation (the paper's code's choices).

    Attributes:
        jitter (int): ``d``; ``d >= 4``: pad ``d`` (``pad_mode``), jitter ``d``, scale,
            rotate, jitter ``d // 2``, centre crop; ``d < 4``: scale and rotate only.
        scales (tuple of float): scale factors drawn uniformly.
        angles (tuple of float): rotation angles (degrees) drawn uniformly.
        pad_mode (str): ``F.pad`` mode of the pad (Lucent's ``pad`` default: ``"reflect"``).
    """

    jitter: int = 16
    scales: tuple[float, ...] = FZ_ZOOMS
    angles: tuple[float, ...] = FZ_ANGLES
    pad_mode: str = "reflect"

    @property
    def uses_jitter(self) -> bool:
        return self.jitter >= 4

    @property
    def pad(self) -> int:
        return self.jitter if self.uses_jitter else 0


def draw_transforms(generator: torch.Generator, steps: int, spec: TransformSpec) -> torch.Tensor:
    """Every step's random draws for one element, from its own generator.

    Args:
        generator (torch.Generator): the element's CPU generator.
        steps (int): number of optimisation steps.
        spec (TransformSpec): what is drawn from.

    Returns:
        float64 Tensor ``[steps, 6]``: ``dx1, dy1, scale, angle (deg), dx2, dy2`` (jitters
        are integers ``0 .. d - 1`` and ``0 .. d // 2 - 1``, zero when ``d < 4``).
    """
    u = torch.rand(steps, 6, generator=generator, dtype=torch.float64)
    d1 = spec.jitter if spec.uses_jitter else 1
    d2 = spec.jitter // 2 if spec.uses_jitter else 1
    scales = torch.tensor(spec.scales, dtype=torch.float64)
    angles = torch.tensor(spec.angles, dtype=torch.float64)

    def pick(col: torch.Tensor, n: int) -> torch.Tensor:
        return torch.clamp(torch.floor(col * n), max=n - 1)

    return torch.stack([
        pick(u[:, 0], d1), pick(u[:, 1], d1),
        scales[pick(u[:, 2], len(scales)).long()], angles[pick(u[:, 3], len(angles)).long()],
        pick(u[:, 4], d2), pick(u[:, 5], d2),
    ], dim=1)


def transform_thetas(draws: torch.Tensor, size: int, spec: TransformSpec) -> torch.Tensor:
    r"""``F.affine_grid`` matrices (``align_corners=True``) of Lucent's composed transforms.

    Pixel coordinates ``(x, y)`` have pixel centres at integers. For an output pixel ``u``
    of the ``size`` canvas, Lucent's steps are undone one by one (``n`` is the padded side):
    centre crop ``v4 = u + o`` with ``o = (n2 - size) // 2``; jitter ``v3 = v4 - j2``;
    rotation by ``a`` about ``c = (n2 - 1) / 2`` (kornia: ``dst = R(a)(src - c) + c``), so
    ``v2 = R(-a)(v3 - c) + c``; scale (``Upsample(align_corners=True)`` to
    ``m = ceil(s n)`` then zero pad ``p = max(0, ceil((n - m) / 2))``, ``n2 = m + 2p``):
    ``v1 = (v2 - p)(n - 1) / (m - 1)``; jitter ``v0 = v1 - j1``.

    Args:
        draws (Tensor): ``[..., 6]`` from :func:`draw_transforms`.
        size (int): side of the output (and of the unpadded image).
        spec (TransformSpec): the transform family.

    Returns:
        float64 Tensor ``[..., 2, 3]`` mapping normalised output to normalised padded input.
    """
    d = draws.to(torch.float64)
    n = float(size + 2 * spec.pad)
    s, angle = d[..., 2], d[..., 3] * (math.pi / 180.0)
    m = torch.ceil(s * n)  # Lucent: np.ceil(scale * d), in float64 as numpy does
    p = torch.clamp(torch.ceil((n - m) / 2), min=0)
    n2 = m + 2 * p
    o = torch.floor((n2 - size) / 2)
    c = (n2 - 1) / 2
    k = (n - 1) / (m - 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # v2 = R(-a) (u + o - j2 - c) + c, R(-a) = [[cos, -sin], [sin, cos]]
    tx = o - d[..., 4] - c
    ty = o - d[..., 5] - c
    # v0 = k (v2 - p) - j1 = A u + b
    a11, a12, a21, a22 = k * cos, -k * sin, k * sin, k * cos
    b1 = k * (cos * tx - sin * ty + c - p) - d[..., 0]
    b2 = k * (sin * tx + cos * ty + c - p) - d[..., 1]
    # normalised: u = (un + 1)(size - 1) / 2, vn = 2 v0 / (n - 1) - 1
    r = (size - 1) / (n - 1)
    g = 2.0 / (n - 1)
    theta = torch.stack([
        torch.stack([r * a11, r * a12, r * (a11 + a12) + g * b1 - 1], dim=-1),
        torch.stack([r * a21, r * a22, r * (a21 + a22) + g * b2 - 1], dim=-1),
    ], dim=-2)
    return theta


def transform_images(images: torch.Tensor, theta: torch.Tensor, spec: TransformSpec) -> torch.Tensor:
    """Pad, then resample each element with its own composed affine map.

    Args:
        images (Tensor): ``[K, 3, size, size]`` images in [0, 1].
        theta (Tensor): ``[K, 2, 3]`` from :func:`transform_thetas` (any float dtype).
        spec (TransformSpec): the transform family (gives the pad).

    Returns:
        Tensor ``[K, 3, size, size]``, differentiable in ``images``.
    """
    k, c, h, w = images.shape
    padded = F.pad(images, [spec.pad] * 4, mode=spec.pad_mode) if spec.pad else images
    grid = affine_grid(theta.to(images.dtype), h, w)
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, [K, C, h, w], align_corners=True)`` by broadcasting.

    The same grid (to float rounding), computed as two broadcast multiply-adds instead of
    a batched matrix product over every pixel: about 15x faster on CPU at 224 px, which
    matters since it runs at every optimisation step.

    Args:
        theta (Tensor): ``[K, 2, 3]``.
        h, w (int): output size.

    Returns:
        Tensor ``[K, h, w, 2]`` of normalised ``(x, y)`` sampling positions.
    """
    xs = torch.linspace(-1.0, 1.0, w, dtype=theta.dtype, device=theta.device)
    ys = torch.linspace(-1.0, 1.0, h, dtype=theta.dtype, device=theta.device)[:, None]
    t = theta[:, :, :, None, None]
    grid = torch.empty(theta.shape[0], h, w, 2, dtype=theta.dtype, device=theta.device)
    torch.add(t[:, 0, 0] * xs + t[:, 0, 2], t[:, 0, 1] * ys, out=grid[..., 0])
    torch.add(t[:, 1, 0] * xs + t[:, 1, 2], t[:, 1, 1] * ys, out=grid[..., 1])
    return grid
