"""The paper's constants, its one "text vs code" choice, and its published channels.

Everything the paper (arXiv 2504.16290) fixes is defined here once and imported where it is
used: the tolerance of Eq. (2), the scale fractions of the §4 sweep, the feature
visualisation's random zooms, angles, steps and learning rate, the jitter per block and node,
and the criteria-passing channels of Fig. 1, 3 and 4. This module imports nothing heavy
(pandas only inside :func:`paper_channels`) and no other layer, so every layer, ``core`` and
``zoo`` included, may import it. A scan's agreement with the published channels is computed in
the criteria layer: :func:`rsi_plugin.criteria.paper_comparison.compare_to_paper`.

**Text or code.** Where the paper's text and its code disagree, the library offers both, as
one switch, :data:`Variant` (``"text"``, the default, or ``"code"``). :func:`resolve` turns it
into the five settings it governs:

============================  ======================  =====================================
setting (config field)        ``"text"``              ``"code"``
============================  ======================  =====================================
``node_variant``              In, Pre, Post of the    Post at the pre-ReLU sum; In of a block
(ScanConfig, ScaleInvariance) block (§2.1)            without downsample at the previous
                                                      block's sum
``jitter_schedule``           appendix 7.1            ``batch_process.sh`` (modules' jitter)
(FeatureVizConfig)
``paper_compat``              False: Pre is a clone   True: Pre read as Lucent reads bn2 (a
(FeatureVizConfig)            read before the sum     reference, which the in-place sum and
                                                      ReLU turn into Post)
``node`` (SweepConfig)        ``"post"`` (§4)         ``"sum"``
``crop`` (SweepConfig)        ``R - floor(R p)``      ``int(input_size (1 - p))``
============================  ======================  =====================================

Each config (:class:`~rsi_plugin.featureviz.optimize.FeatureVizConfig`,
:class:`~rsi_plugin.criteria.channel_scan.ScanConfig`,
:class:`~rsi_plugin.ablation.experiment.SweepConfig`) takes ``variant="text"`` and keeps the old
switches as overrides: a switch left at ``None`` follows the variant; a value given wins.

**Published channels.** The lists are facts read off the paper: Fig. 1 (exemplary channels of
blocks 2.1 and 3.1), Fig. 3 (the rest of blocks 1.1, 2.0 and 2.1) and Fig. 4 (the rest of
block 3.1), for torchvision ResNet18 with ``IMAGENET1K_V1`` weights. They agree with the
counts of §3: 6 channels in 1.1, 2 in 2.0, 23 in 2.1 and 46 in 3.1. They are stored in
``rsi_plugin/data/paper_channels.csv`` with a ``source`` column naming the figure. The
paper probed blocks 1.1 to 4.1 (not 1.0); the others had no passing channel.

The paper notes its results "may vary due to the stochastic nature of feature
visualization": a comparison measures agreement, it is not a pass/fail test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal, Sequence

from rsi_plugin.errors import UnknownNameError

if TYPE_CHECKING:  # pandas is imported by the functions that need it
    import pandas as pd

__all__ = [
    "Variant",
    "VARIANTS",
    "PaperChoices",
    "resolve",
    "check_variant",
    "TOLERANCE",
    "SWEEP_SCALES",
    "FZ_ZOOMS",
    "FZ_ANGLES",
    "FZ_STEPS",
    "FZ_LR",
    "JITTER_DEFAULT",
    "JITTER_TEXT",
    "JITTER_CODE",
    "jitter_table",
    "PAPER_MODEL",
    "PAPER_WEIGHTS",
    "PAPER_BLOCKS",
    "paper_channels",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- the paper's constants

#: the tolerance ``t`` of Eq. (2): ``1/t < Post(x_in) / Post(x_pre) < t`` (§3)
TOLERANCE: float = 1.5
#: the scale fractions ``p`` of the §4 sweep: no scale, then 10 % to 50 % in steps of 10 %
SWEEP_SCALES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
#: the FZ's random zoom factors, the paper's code: ``random_scale([1, 0.975, 1.025, 0.95, 1.05])``
FZ_ZOOMS: tuple[float, ...] = (1.0, 0.975, 1.025, 0.95, 1.05)
#: the FZ's random rotations in degrees, the paper's code: ``random_rotate([-5, ..., 5])``
FZ_ANGLES: tuple[float, ...] = tuple(float(a) for a in range(-5, 6))
#: optimisation steps of one FZ (the paper's code)
FZ_STEPS: int = 2560
#: Adam's learning rate of the FZs (Lucent's default, which the paper kept)
FZ_LR: float = 0.05

#: the jitter (pixels, for 224-px images) of every block and node not in a table below
JITTER_DEFAULT: int = 16
#: appendix 7.1: ``(block, node)`` -> jitter; node ``"*"`` stands for every node of the block
JITTER_TEXT: dict[tuple[str, str], int] = {
    ("1.1", "*"): 0, ("2.0", "*"): 0, ("2.1", "pre"): 4, ("3.0", "*"): 4,
}
#: the paper's ``batch_process.sh``, which renders *modules*: the entries that differ from the
#: text (``layer1.0`` is 1.0 Post, ``layer2.1.bn2`` 2.1 Pre...). In of a block ``X.k`` without
#: downsample (``k > 0``) is module ``layerX.(k-1)``, the previous block's Post, and gets its
#: jitter (:func:`jitter_table`); nodes the script never rendered fall back to the text.
JITTER_CODE: dict[tuple[str, str], int] = {
    ("1.0", "post"): 0, ("1.1", "pre"): 0, ("1.1", "post"): 0, ("2.0", "*"): 0,
    ("2.1", "pre"): 4, ("2.1", "post"): 4, ("3.0", "*"): 4,
}

PAPER_MODEL = "resnet18"
PAPER_WEIGHTS = "IMAGENET1K_V1"
#: the blocks the paper probed ("all the channels from blocks 1.1 to 4.1")
PAPER_BLOCKS: tuple[str, ...] = ("1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1")

# --------------------------------------------------------------------------- text or code

Variant = Literal["text", "code"]
#: the values of :data:`Variant`
VARIANTS: tuple[str, ...] = ("text", "code")


def check_variant(value: object, name: str = "variant") -> str:
    """Validate a text/code switch.

    Args:
        value: the value given.
        name (str): the switch's name, for the message (``"node_variant"``, ``"crop"``...).

    Returns:
        str: ``value``.

    Raises:
        ValueError: unless ``value`` is ``"text"`` or ``"code"``, naming both.
    """
    if not isinstance(value, str) or value not in VARIANTS:
        raise UnknownNameError(f"unknown {name} {value!r}; valid: {', '.join(VARIANTS)}")
    return value


@dataclass(frozen=True)
class PaperChoices:
    r"""The settings one :data:`Variant` stands for (see the module's table).

    Attributes:
        variant (str): ``"text"`` or ``"code"``.
        node_variant (str): where the criteria read In and Post
            (:func:`rsi_plugin.criteria.equations.node_sites`): ``"text"`` or ``"code"``.
        jitter_schedule (str): the FZ jitter per block and node (:func:`jitter_table`).
        fz_paper_compat (bool): read Pre as Lucent does when rendering FZs
            (:class:`~rsi_plugin.featureviz.optimize.FeatureVizConfig` ``paper_compat``).
        sweep_node (str): the node the §4 sweep mean-ablates, ``"post"`` or ``"sum"``.
        crop (str): the §4 sweep's crop (:func:`rsi_plugin.core.transforms.sweep_crop_size`).
    """

    variant: str
    node_variant: str
    jitter_schedule: str
    fz_paper_compat: bool
    sweep_node: str
    crop: str


_CHOICES: dict[str, PaperChoices] = {
    "text": PaperChoices("text", node_variant="text", jitter_schedule="text", fz_paper_compat=False,
                         sweep_node="post", crop="text"),
    "code": PaperChoices("code", node_variant="code", jitter_schedule="code", fz_paper_compat=True,
                         sweep_node="sum", crop="code"),
}


def resolve(variant: Variant = "text") -> PaperChoices:
    """The five settings of the paper's text or of its code.

    Args:
        variant (str): ``"text"`` (default) or ``"code"``.

    Returns:
        :class:`PaperChoices`.

    Raises:
        ValueError: an unknown variant, naming the valid ones.
    """
    return _CHOICES[check_variant(variant)]


def _split_name(block_name: str) -> tuple[int, int] | None:
    parts = str(block_name).split(".")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def jitter_table(block_name: str, node: str, schedule: Variant = "text") -> int:
    r"""The paper's jitter (0, 4 or 16 px at 224 px) of node ``node`` (``"in"``, ``"pre"``,
    ``"sum"``, ``"post"``) of block ``block_name`` (``"2.1"``) under ``schedule`` (``"text"``
    or ``"code"``), read off :data:`JITTER_TEXT` / :data:`JITTER_CODE`: what
    :func:`rsi_plugin.featureviz.optimize.paper_jitter` returns, without checking the node.

    Sum gets Post's jitter. With ``schedule="code"``, In of a block ``X.k`` (``k > 0``) is
    the previous block's Post. Other blocks (of any model) get :data:`JITTER_DEFAULT`.
    Raises ValueError for an unknown schedule.
    """
    check_variant(schedule, "jitter schedule")
    node = "post" if node == "sum" else node
    name = str(block_name)
    if schedule == "code":
        split = _split_name(name)
        if split is not None and node == "in" and split[1] > 0:
            return jitter_table(f"{split[0]}.{split[1] - 1}", "post", "code")
        for key in ((name, node), (name, "*")):
            if key in JITTER_CODE:
                return JITTER_CODE[key]
    for key in ((name, node), (name, "*")):
        if key in JITTER_TEXT:
            return JITTER_TEXT[key]
    return JITTER_DEFAULT


# --------------------------------------------------------------------------- published channels

def paper_channels(blocks: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's criteria-passing channels of ResNet18 (``IMAGENET1K_V1``).

    Args:
        blocks (str or list of str, optional): keep only these blocks (``"2.1"``);
            all by default.

    Returns:
        DataFrame with columns ``block`` (str), ``channel`` (int, zero-indexed as in the
        paper) and ``source`` (the figure: ``"Fig. 1"``, ``"Fig. 3"`` or ``"Fig. 4"``),
        in the paper's order.

    Raises:
        ValueError: for a block the paper did not probe, listing the probed ones.
    """
    import pandas as pd

    with resources.files("rsi_plugin").joinpath("data", "paper_channels.csv").open("r") as handle:
        table = pd.read_csv(handle, dtype={"block": str, "channel": int, "source": str})
    if blocks is None:
        return table
    if isinstance(blocks, str):
        blocks = [blocks]
    unknown = [b for b in blocks if b not in PAPER_BLOCKS]
    if unknown:
        raise UnknownNameError(f"the paper did not probe block(s) {unknown}; probed: {', '.join(PAPER_BLOCKS)}")
    return table[table["block"].isin(list(blocks))].reset_index(drop=True)
