"""A deterministic, procedural ten-class image set ("shapes") for the bundled tiny model.

Every image shows one object over a cluttered background. The ten classes differ by
outline (disc, ring, square, triangle, cross, star) or by inner texture / structure
(grating, checkerboard, spiral, dots), see :data:`CLASSES`. Objects are drawn
anti-aliased from signed-distance functions with a soft one-pixel edge, at a log-uniform
random diameter (20 % to 80 % of the image side), random position, rotation, stretch,
colour (at least :data:`MIN_CONTRAST` away from the background colour) and linear
shading. Backgrounds carry coarse and fine colour noise, a faint grating, stray line
segments and pixel noise.

Everything is plain torch, vectorised over the batch, and seeded through
:class:`torch.Generator`: the same ``(n, seed, size, centered, classes)`` always gives
the same tensors. Drawing happens in two steps, :func:`sample_params` (all randomness,
independent of the image size) and :func:`render` (a pure function of the parameters),
so one set of objects can be rendered at several sizes, or with edited parameters.

Seeds. :func:`generate` derives its label permutation and the generator of each chunk of
:data:`CHUNK` images from ``seed`` by hashing (:func:`derive_seed`). Training and
validation draw from disjoint seed ranges: :func:`train_seed` ``(seed, step)`` lies in
``[TRAIN_BASE, TRAIN_BASE + SEED_SPAN)``, :func:`val_seed` in ``[VAL_BASE, ...)`` and
:func:`eval_seed` (centred scale-sweep sets) in ``[EVAL_BASE, ...)``; the ranges do not
overlap, so no training batch can repeat a validation image.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from rsi_plugin.errors import OutOfRangeError, RSIError, UnknownNameError

__all__ = [
    "CLASSES",
    "CHUNK",
    "MIN_CONTRAST",
    "TRAIN_BASE",
    "VAL_BASE",
    "EVAL_BASE",
    "SEED_SPAN",
    "ShapeParams",
    "derive_seed",
    "train_seed",
    "val_seed",
    "eval_seed",
    "balanced_labels",
    "sample_params",
    "render",
    "generate",
    "ShapesDataset",
    "class_folder_names",
    "export_imagefolder",
]

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = (
    "disc", "ring", "square", "triangle", "cross",
    "star", "grating", "checkerboard", "spiral", "dots",
)
"""Class names; the label of a class is its index here."""

CHUNK: int = 256
"""Images drawn from one :class:`torch.Generator` in :func:`generate` (per-index determinism)."""

MIN_CONTRAST: float = 0.35
"""Least Euclidean RGB distance between an object's colour and its background colour."""

SEED_SPAN: int = 2 ** 60
TRAIN_BASE: int = 0
VAL_BASE: int = SEED_SPAN
EVAL_BASE: int = 2 * SEED_SPAN

_N_LINES = 4  # stray line segments per image (each present with some probability)
_COARSE = 4   # side of the coarse background noise grid
_FINE = 12    # side of the fine background noise grid
_MIN_PERIOD = 0.07  # least texture period, as a fraction of the image side


# ----------------------------------------------------------------------------- seeds
def derive_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` by SHA-256 (stable across runs and platforms).

    Args:
        *parts: ints / strings, e.g. ``("chunk", seed, 3)``.

    Returns:
        int in ``[0, 2**63)``.
    """
    text = "/".join(repr(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def train_seed(seed: int, step: int) -> int:
    """Seed of the training batch of run ``seed`` at ``step``; in the training range."""
    return TRAIN_BASE + derive_seed("train", seed, step) % SEED_SPAN


def val_seed(seed: int) -> int:
    """Seed of the validation set of run ``seed``; in the validation range."""
    return VAL_BASE + derive_seed("val", seed) % SEED_SPAN


def eval_seed(seed: int) -> int:
    """Seed of the centred evaluation (scale-sweep) set of run ``seed``; in its own range."""
    return EVAL_BASE + derive_seed("eval", seed) % SEED_SPAN


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _class_indices(classes: Sequence[int | str] | None) -> list[int]:
    if classes is None:
        return list(range(len(CLASSES)))
    out = []
    for c in classes:
        if isinstance(c, str):
            if c not in CLASSES:
                raise UnknownNameError(f"unknown class {c!r}; valid: {CLASSES}")
            out.append(CLASSES.index(c))
        else:
            if not 0 <= int(c) < len(CLASSES):
                raise RSIError(f"class index {c} out of range [0, {len(CLASSES)})")
            out.append(int(c))
    if not out:
        raise RSIError("classes must not be empty")
    return out


def balanced_labels(n: int, seed: int, classes: Sequence[int | str] | None = None) -> Tensor:
    """Exactly balanced labels in a seeded random order.

    Label ``i`` is ``classes[i % len(classes)]``, then the whole vector is permuted with a
    generator seeded from ``seed``. With ``n`` a multiple of the class count every class
    occurs ``n / len(classes)`` times; otherwise counts differ by at most one.

    Args:
        n (int): number of labels.
        seed (int): seed.
        classes (sequence of int or str, optional): subset of classes; all ten by default.

    Returns:
        Tensor ``[n]`` int64.
    """
    idx = torch.tensor(_class_indices(classes), dtype=torch.int64)
    labels = idx[torch.arange(n) % len(idx)]
    perm = torch.randperm(n, generator=_generator(derive_seed("labels", seed)))
    return labels[perm]


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class ShapeParams:
    """Everything random about a batch of ``n`` images, independent of the image size.

    Positions and lengths are fractions of the image side; ``radius`` is half the object's
    diameter. Angles are in radians. Edit with :func:`dataclasses.replace` (e.g. to draw
    an unrotated, centred object) and draw with :func:`render`.

    Attributes:
        labels: ``[n]`` int64 class indices.
        center: ``[n, 2]`` object centre (x, y) in [0, 1].
        radius: ``[n]`` object radius (diameter / 2) as a fraction of the side.
        rotation: ``[n]`` rotation angle.
        stretch: ``[n]`` aspect factor a (x scaled by a, y by 1 / a).
        color: ``[n, 3]`` object colour.
        background: ``[n, 3]`` background base colour.
        shade: ``[n, 3]`` linear shading (amplitude, direction cos, direction sin).
        shape: ``[n, 4]`` class-specific shape numbers (thickness, period, pointiness...).
        phase: ``[n, 2]`` texture phase offsets in [0, 1).
        envelope: ``[n]`` bool, texture classes: True = disc outline, False = square.
        coarse: ``[n, 3, 4, 4]`` coarse colour noise (already scaled by its amplitude).
        fine: ``[n, 3, 12, 12]`` fine colour noise (scaled).
        grating: ``[n, 7]`` faint background grating (cycles, angle, phase, amplitude, rgb).
        lines: ``[n, 4, 9]`` stray segments (x0, y0, x1, y1, width px, opacity, rgb).
        noise: ``[n]`` pixel noise standard deviation.
        noise_seed: int, seed of the pixel noise (drawn at render time at the render size).
    """

    labels: Tensor
    center: Tensor
    radius: Tensor
    rotation: Tensor
    stretch: Tensor
    color: Tensor
    background: Tensor
    shade: Tensor
    shape: Tensor
    phase: Tensor
    envelope: Tensor
    coarse: Tensor
    fine: Tensor
    grating: Tensor
    lines: Tensor
    noise: Tensor
    noise_seed: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def index(self, idx: Tensor | slice) -> "ShapeParams":
        """The parameters of a subset of the images (same ``noise_seed``)."""
        kw = {f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "noise_seed"}
        return ShapeParams(noise_seed=self.noise_seed, **kw)


def _u(g: torch.Generator, *shape: int, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def _object_colors(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    """Background base colours and object colours at least MIN_CONTRAST away."""
    bg = _u(g, n, 3)
    obj = _u(g, n, 3)
    d = obj - bg
    norm = d.norm(dim=1, keepdim=True).clamp_min(1e-6)
    d = torch.where(norm < MIN_CONTRAST, d / norm * MIN_CONTRAST, d)
    plus, minus = (bg + d).clamp(0, 1), (bg - d).clamp(0, 1)
    use_plus = (plus - bg).norm(dim=1, keepdim=True) >= (minus - bg).norm(dim=1, keepdim=True)
    obj = torch.where(use_plus, plus, minus)
    # Clamping can still cost contrast near the cube's faces: push towards the far corner.
    far = (bg < 0.5).to(bg.dtype)
    short = (obj - bg).norm(dim=1, keepdim=True) < MIN_CONTRAST
    obj = torch.where(short, far * 0.85 + obj * 0.15, obj)
    return bg, obj


def sample_params(labels: Tensor, generator: torch.Generator, centered: bool = False) -> ShapeParams:
    """Draw all random parameters of a batch (size-independent).

    Args:
        labels (Tensor): ``[n]`` int64 class indices.
        generator (torch.Generator): CPU generator; the draws are in a fixed order.
        centered (bool): object centred with a small jitter (±4 % of the side) instead of
            anywhere in the frame.

    Returns:
        :class:`ShapeParams`.
    """
    g = generator
    labels = torch.as_tensor(labels, dtype=torch.int64)
    n = labels.shape[0]
    radius = 0.5 * torch.exp(_u(g, n, lo=math.log(0.2), hi=math.log(0.8)))
    jitter = _u(g, n, 2, lo=-1.0, hi=1.0)
    if centered:
        center = 0.5 + 0.04 * jitter
    else:
        # Mostly inside the frame; the largest objects may be clipped a little.
        reach = (0.5 - 0.8 * radius).clamp_min(0.0).unsqueeze(1)
        center = 0.5 + reach * jitter
    rotation = _u(g, n, hi=2 * math.pi)
    stretch = torch.exp(_u(g, n, lo=-math.log(1.3), hi=math.log(1.3)))
    background, color = _object_colors(g, n)
    shade_amp = _u(g, n, hi=0.3)
    shade_dir = _u(g, n, hi=2 * math.pi)
    shade = torch.stack([shade_amp, shade_dir.cos(), shade_dir.sin()], dim=1)
    shape = _u(g, n, 4)
    phase = _u(g, n, 2)
    envelope = torch.rand(n, generator=g) < 0.5
    coarse = _u(g, n, 3, _COARSE, _COARSE, lo=-1, hi=1) * _u(g, n, 1, 1, 1, lo=0.03, hi=0.18)
    fine = _u(g, n, 3, _FINE, _FINE, lo=-1, hi=1) * _u(g, n, 1, 1, 1, hi=0.07)
    grating = torch.cat([
        _u(g, n, 1, lo=3.0, hi=14.0),            # cycles per image side
        _u(g, n, 1, hi=math.pi),                 # angle
        _u(g, n, 1, hi=2 * math.pi),             # phase
        _u(g, n, 1, hi=0.06),                    # amplitude
        _u(g, n, 3, lo=-1.0, hi=1.0),            # colour direction
    ], dim=1)
    ends = _u(g, n, _N_LINES, 4, lo=-0.1, hi=1.1)
    width = _u(g, n, _N_LINES, 1, lo=0.6, hi=1.6)
    present = (torch.rand(n, _N_LINES, 1, generator=g) < 0.6).to(torch.float32)
    opacity = _u(g, n, _N_LINES, 1, lo=0.25, hi=0.8) * present
    line_rgb = _u(g, n, _N_LINES, 3)
    lines = torch.cat([ends, width, opacity, line_rgb], dim=2)
    noise = _u(g, n, hi=0.03)
    noise_seed = int(torch.randint(0, 2 ** 62, (1,), generator=g).item())
    return ShapeParams(labels, center, radius, rotation, stretch, color, background, shade,
                       shape, phase, envelope, coarse, fine, grating, lines, noise, noise_seed)


# ----------------------------------------------------------------------------- SDFs
# All in object units (radius 1), x / y of shape [k, H, W], per-image numbers [k, 1, 1].
def _frac(t: Tensor) -> Tensor:
    return t - torch.floor(t)


def _sd_disc(x: Tensor, y: Tensor) -> Tensor:
    return torch.hypot(x, y) - 1.0


def _sd_box(x: Tensor, y: Tensor, hx: Tensor | float, hy: Tensor | float) -> Tensor:
    dx, dy = x.abs() - hx, y.abs() - hy
    outside = torch.hypot(dx.clamp_min(0), dy.clamp_min(0))
    return outside + torch.maximum(dx, dy).clamp_max(0)


def _sd_star(x: Tensor, y: Tensor, n: int, m: Tensor | float) -> Tensor:
    """Regular star / polygon of circumradius 1 (Inigo Quilez' sdStar); m = 2: polygon."""
    an = math.pi / n
    en = math.pi / torch.as_tensor(m, dtype=x.dtype)
    acx, acy = math.cos(an), math.sin(an)
    ecx, ecy = torch.cos(en), torch.sin(en)
    bn = torch.remainder(torch.atan2(x, y), 2 * an) - an
    rho = torch.hypot(x, y)
    px, py = rho * torch.cos(bn) - acx, rho * torch.sin(bn).abs() - acy
    t = torch.minimum((-(px * ecx + py * ecy)).clamp_min(0), acy / ecy)
    px, py = px + ecx * t, py + ecy * t
    return torch.hypot(px, py) * torch.sign(px)


def _sd_class(c: int, x: Tensor, y: Tensor, s: Tensor, ph: Tensor, env: Tensor,
              radius: Tensor) -> Tensor:
    """Signed distance of class ``c`` (negative inside). s: [k,4,1,1], ph: [k,2,1,1],
    radius: [k,1,1] (fraction of the side; texture periods never drop below
    :data:`_MIN_PERIOD` of the side, so small textured objects stay resolvable)."""
    s0, s1, s2 = s[:, 0], s[:, 1], s[:, 2]
    min_p = _MIN_PERIOD / radius
    envelope = torch.where(env, _sd_disc(x, y), _sd_box(x, y, 0.8, 0.8))
    name = CLASSES[c]
    if name == "disc":
        return _sd_disc(x, y)
    if name == "ring":
        t = 0.14 + 0.11 * s0  # half thickness
        return (torch.hypot(x, y) - (1.0 - t)).abs() - t
    if name == "square":
        return _sd_box(x, y, 0.78, 0.78)
    if name == "triangle":
        return _sd_star(x, y, 3, 2.0)
    if name == "cross":
        w = 0.2 + 0.12 * s0
        return torch.minimum(_sd_box(x, y, 0.95, w), _sd_box(x, y, w, 0.95))
    if name == "star":
        return _sd_star(x, y, 5, 3.0 + 1.0 * s0)
    if name == "grating":
        p = torch.maximum(0.38 + 0.17 * s1, min_p)  # period
        u = x / p + ph[:, 0]
        return torch.maximum(envelope, (_frac(u) - 0.5).abs() * p - p / 4)
    if name == "checkerboard":
        p = torch.maximum(0.34 + 0.16 * s1, 0.5 * min_p)  # cell side
        u, v = x / p + ph[:, 0], y / p + ph[:, 1]
        fu, fv = _frac(u), _frac(v)
        d = torch.minimum(torch.minimum(fu, 1 - fu), torch.minimum(fv, 1 - fv)) * p
        on = torch.remainder(torch.floor(u) + torch.floor(v), 2) == 0
        return torch.maximum(envelope, torch.where(on, -d, d))
    if name == "spiral":
        b = torch.maximum(0.3 + 0.12 * s1, min_p)  # radial distance between turns
        chir = torch.where(s2 < 0.5, -1.0, 1.0)
        phi = torch.atan2(y, x) * chir
        t = _frac(torch.hypot(x, y) / b - phi / (2 * math.pi) + ph[:, 0])
        return torch.maximum(_sd_disc(x, y), torch.minimum(t, 1 - t) * b - 0.24 * b)
    if name == "dots":
        p = torch.maximum(0.36 + 0.14 * s1, min_p)  # grid period
        r = p * (0.24 + 0.1 * s0)
        fu, fv = _frac(x / p + ph[:, 0]) - 0.5, _frac(y / p + ph[:, 1]) - 0.5
        return torch.maximum(envelope, torch.hypot(fu, fv) * p - r)
    raise AssertionError(name)


# ----------------------------------------------------------------------------- rendering
def _background(p: ShapeParams, size: int, xs: Tensor, ys: Tensor) -> Tensor:
    """Cluttered background [n, 3, H, W] (xs, ys: pixel centres in [0, 1], [1, 1, H, W])."""
    n = len(p)
    img = p.background.view(n, 3, 1, 1).expand(n, 3, size, size)
    img = img + F.interpolate(p.coarse, size=(size, size), mode="bilinear", align_corners=True)
    img = img + F.interpolate(p.fine, size=(size, size), mode="bilinear", align_corners=True)
    gr = p.grating
    ang = gr[:, 1].view(n, 1, 1, 1)
    wave = torch.sin(2 * math.pi * gr[:, 0].view(n, 1, 1, 1) * (xs * ang.cos() + ys * ang.sin())
                     + gr[:, 2].view(n, 1, 1, 1))
    img = img + gr[:, 3].view(n, 1, 1, 1) * gr[:, 4:7].view(n, 3, 1, 1) * wave
    # Stray line segments, composited one after another (distance to a segment, 1 px AA).
    for k in range(p.lines.shape[1]):
        seg = p.lines[:, k]
        ax, ay, bx, by = (seg[:, i].view(n, 1, 1, 1) for i in range(4))
        dx, dy = bx - ax, by - ay
        t = (((xs - ax) * dx + (ys - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-8)).clamp(0, 1)
        dist = torch.hypot(xs - ax - t * dx, ys - ay - t * dy) * size
        half = seg[:, 4].view(n, 1, 1, 1) / 2
        alpha = (half + 0.5 - dist).clamp(0, 1) * seg[:, 5].view(n, 1, 1, 1)
        img = img * (1 - alpha) + seg[:, 6:9].view(n, 3, 1, 1) * alpha
    return img


def render(params: ShapeParams, size: int = 64, clutter: bool = True) -> Tensor:
    """Draw the images described by ``params``.

    Args:
        params (ShapeParams): from :func:`sample_params`.
        size (int): image side in pixels.
        clutter (bool): background noise, grating, line segments, object shading and pixel
            noise; ``False`` draws a flat object on a plain background colour.

    Returns:
        Tensor ``[n, 3, size, size]`` float32 in [0, 1].
    """
    p = params
    n = len(p)
    if n == 0:
        return torch.zeros(0, 3, size, size)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    xs, ys = coords.view(1, 1, 1, size), coords.view(1, 1, size, 1)
    r = p.radius.view(n, 1, 1)
    dx = (xs[:, 0] - p.center[:, 0].view(n, 1, 1)) / r  # [n, H, W] after broadcasting
    dy = (ys[:, 0] - p.center[:, 1].view(n, 1, 1)) / r
    dx, dy = torch.broadcast_tensors(dx, dy)
    cos, sin = p.rotation.cos().view(n, 1, 1), p.rotation.sin().view(n, 1, 1)
    a = p.stretch.view(n, 1, 1)
    x = (cos * dx + sin * dy) / a
    y = (-sin * dx + cos * dy) * a

    sdf = torch.empty(n, size, size)
    for c in range(len(CLASSES)):
        idx = (p.labels == c).nonzero().squeeze(1)
        if idx.numel():
            sdf[idx] = _sd_class(c, x[idx], y[idx], p.shape[idx].view(-1, 4, 1, 1),
                                 p.phase[idx].view(-1, 2, 1, 1), p.envelope[idx].view(-1, 1, 1),
                                 r[idx])
    alpha = (0.5 - sdf * (r * size)).clamp(0, 1).unsqueeze(1)

    color = p.color.view(n, 3, 1, 1)
    if clutter:
        bg = _background(p, size, xs, ys)
        amp, sc, ss = (p.shade[:, i].view(n, 1, 1, 1) for i in range(3))
        color = color + amp * 0.5 * (dx.unsqueeze(1) * sc + dy.unsqueeze(1) * ss)
    else:
        bg = p.background.view(n, 3, 1, 1).expand(n, 3, size, size)
    img = bg * (1 - alpha) + color.clamp(0, 1) * alpha
    if clutter:
        g = _generator(p.noise_seed)
        img = img + torch.randn(n, 3, size, size, generator=g) * p.noise.view(n, 1, 1, 1)
    return img.clamp(0, 1).contiguous()


# ----------------------------------------------------------------------------- public API
def _generate_chunk(labels: Tensor, seed: int, chunk: int, size: int, centered: bool,
                    clutter: bool) -> tuple[Tensor, ShapeParams]:
    g = _generator(derive_seed("chunk", seed, chunk))
    params = sample_params(labels, g, centered=centered)
    return render(params, size, clutter=clutter), params


def generate(n: int, seed: int, size: int = 64, centered: bool = False,
             classes: Sequence[int | str] | None = None, clutter: bool = True,
             return_params: bool = False
             ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, list[ShapeParams]]:
    r"""Draw ``n`` labelled images.

    Labels come from :func:`balanced_labels` ``(n, seed, classes)``; images are drawn in
    chunks of :data:`CHUNK`, chunk ``k`` from a generator seeded with
    ``derive_seed("chunk", seed, k)``, so image ``i`` depends only on ``(seed, i, label)``
    and ``generate(n, seed)[i]`` equals ``ShapesDataset(n, seed)[i]``.

    Args:
        n (int): number of images.
        seed (int): seed; same seed, same tensors.
        size (int): image side in pixels. Default 64.
        centered (bool): evaluation variant, the object at the centre with a small jitter
            (so a centre crop enlarges the object rather than cutting it out of the frame).
        classes (sequence of int or str, optional): draw only these classes (labels keep
            their indices in :data:`CLASSES`).
        clutter (bool): cluttered background and shading; ``False`` gives clean images.
        return_params (bool): also return the :class:`ShapeParams` of each chunk.

    Returns:
        ``(images, labels)``: Tensor ``[n, 3, size, size]`` float32 in [0, 1] and Tensor
        ``[n]`` int64; with ``return_params`` a third item, the list of per-chunk params.
    """
    if n < 0:
        raise RSIError(f"n must be >= 0, got {n}")
    labels = balanced_labels(n, seed, classes)
    images, params = [], []
    for k, start in enumerate(range(0, n, CHUNK)):
        img, prm = _generate_chunk(labels[start:start + CHUNK], seed, k, size, centered, clutter)
        images.append(img)
        params.append(prm)
    out = torch.cat(images) if images else torch.zeros(0, 3, size, size)
    return (out, labels, params) if return_params else (out, labels)


class ShapesDataset(Dataset):
    r"""Map-style dataset over :func:`generate` ``(n, seed, size, centered)``, drawn lazily
    one chunk of :data:`CHUNK` images at a time and cached (item ``i`` equals
    ``generate(n, seed, size, centered)[i]``). The cache holds every chunk touched
    (``n * 3 * size * size * 4`` bytes at most, 48 KiB per 64 px image).

    Args:
        n (int): number of images.
        seed (int): seed.
        size (int): image side. Default 64.
        centered (bool): centred evaluation variant.
        clutter (bool): cluttered backgrounds. Default True.

    Returns (per item):
        ``(image, label)``: Tensor ``[3, size, size]`` float32 in [0, 1] and an int.
    """

    def __init__(self, n: int, seed: int, size: int = 64, centered: bool = False,
                 clutter: bool = True) -> None:
        if n < 0:
            raise RSIError(f"n must be >= 0, got {n}")
        self.n, self.seed, self.size, self.centered, self.clutter = n, seed, size, centered, clutter
        self.labels = balanced_labels(n, seed)
        self._chunks: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return self.n

    def _chunk(self, k: int) -> Tensor:
        if k not in self._chunks:
            lab = self.labels[k * CHUNK:(k + 1) * CHUNK]
            self._chunks[k] = _generate_chunk(lab, self.seed, k, self.size, self.centered,
                                              self.clutter)[0]
        return self._chunks[k]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise OutOfRangeError(f"index {i} out of range for {self.n} images")
        k, j = divmod(i, CHUNK)
        return self._chunk(k)[j], int(self.labels[i])

    def tensors(self) -> tuple[Tensor, Tensor]:
        """Every item stacked: ``(images [n, 3, size, size], labels [n])``, equal to
        ``generate(n, seed, size, centered)``."""
        chunks = [self._chunk(k) for k in range((self.n + CHUNK - 1) // CHUNK)]
        images = torch.cat(chunks) if chunks else torch.zeros(0, 3, self.size, self.size)
        return images, self.labels.clone()


def class_folder_names() -> list[str]:
    """Folder names of :func:`export_imagefolder`: ``"00_disc"``, ``"01_ring"``, ...

    The two-digit prefix makes alphabetical order (what torchvision's ``ImageFolder``
    uses to assign labels) equal label order.
    """
    return [f"{i:02d}_{name}" for i, name in enumerate(CLASSES)]


def export_imagefolder(directory: str | Path, n: int, seed: int, size: int = 64,
                       centered: bool = False) -> Path:
    r"""Write :func:`generate` ``(n, seed, size, centered)`` as PNGs in ImageNet layout.

    Files are ``directory/<NN_class>/<index>.png`` (``index`` zero-padded, the position
    in the generated batch). Folder names carry a two-digit label prefix
    (:func:`class_folder_names`), so ``torchvision.datasets.ImageFolder(directory)`` sorts
    them into label order and reads back the same labels. Pixels are quantised to 8 bit
    (``round(255 * x)``).

    Args:
        directory (str or Path): output root (created).
        n (int): number of images.
        seed (int): seed.
        size (int): image side. Default 64.
        centered (bool): centred evaluation variant.

    Returns:
        Path of ``directory``.
    """
    from PIL import Image

    root = Path(directory)
    names = class_folder_names()
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    width = max(1, len(str(max(n - 1, 0))))
    data = ShapesDataset(n, seed, size, centered)
    for k, start in enumerate(range(0, n, CHUNK)):
        chunk = data._chunk(k)
        arr = (chunk * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        for j in range(arr.shape[0]):
            i = start + j
            path = root / names[int(data.labels[i])] / f"{i:0{width}d}.png"
            Image.fromarray(arr[j]).save(path)
        data._chunks.clear()
    logger.info("wrote %d images to %s", n, root)
    return root
