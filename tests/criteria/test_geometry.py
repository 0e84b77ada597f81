"""Where a block's centre neuron looks (rsi_plugin.criteria.geometry): ``S`` zoomed about a point,
and the receptive-field centre as a gradient centroid. Moved from tests/featureviz (issue 23)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsi_plugin.testing.models import random_norm_tiny as make_tiny

SIZE = 64


def test_zoom_about_the_image_centre_is_S_and_follows_a_shifted_centre():
    from rsi_plugin.criteria.geometry import zoom_about
    from rsi_plugin.core.transforms import S

    x = torch.rand(2, 3, 32, 32)
    ours, ref = zoom_about(x, 2.0, (15.5, 15.5)), S(x)
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])  # equal but for the crop's border
    # zooming about (c + d) equals zooming a copy shifted by -d about c (integer d, inside the image)
    shifted = torch.roll(x, shifts=(-4, -2), dims=(2, 3))
    torch.testing.assert_close(zoom_about(x, 2.0, (19.5, 17.5))[..., 2:-2, 2:-2],
                               zoom_about(shifted, 2.0, (15.5, 15.5))[..., 2:-2, 2:-2])


def test_receptive_field_centre_of_a_symmetric_model_is_the_stride_centre():
    from rsi_plugin.criteria.geometry import receptive_field_center

    model = make_tiny(0)
    # flip-symmetric kernels: the gradient centroid is set by the geometry alone. Block 1.0's
    # centre neuron (8, 8) of its 16x16 map sits at pixel 4 * 8 = 32 (stem stride 2, pool
    # stride 2, centres at 2i); its receptive field (~43 px) lies inside the 64-px image.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.data
            m.weight.data = (w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)) / 4
    cy, cx = receptive_field_center(model, "1.0", "pre", samples=32, image_size=SIZE)
    assert abs(cy - 32) < 0.3 and abs(cx - 32) < 0.3, (cy, cx)
    # a channel-summed centre neuron that no gradient reaches is an error, not the image centre
    for m in model.layer1[0].bn2.modules():
        m.weight.data.zero_()
    with pytest.raises(RuntimeError, match="no gradient"):
        receptive_field_center(model, "1.0", "pre", samples=2, image_size=SIZE)
