"""Lucent's own ``render_vis`` on one channel, replayed from our initial spectrum and our random
draws: the reference the feature-visualisation and Lucent-objective tests compare against.

The transforms are the paper's code's at jitter < 4 (random scale, random rotation) plus the
centre crop back to size that a batch needs (see fzparam deviation 2); Lucent's
``np.random.choice`` is fed our scale and angle draws, so both optimisations see the same images.
"""

from __future__ import annotations

import numpy as np
import torch

from rsi_plugin.featureviz import param as fp
from rsi_plugin.featureviz.optimize import FeatureVizConfig, channel_seed


def lucent_render_vis(model, objective, channel: int, cfg: FeatureVizConfig, steps: int, size: int,
                      monkeypatch) -> torch.Tensor:
    """Run Lucent's ``render_vis(model, objective)`` for ``steps`` steps at ``size`` px from
    channel ``channel``'s initial parameters and draws under ``cfg``.

    Returns:
        Tensor ``[1, 3, size, size]`` in [0, 1].
    """
    import lucent.optvis.transform as lt
    from lucent.optvis import param, render

    spec = cfg.transform_spec()
    g = torch.Generator().manual_seed(channel_seed(cfg.seed, channel))
    start = fp.init_params([g], size)
    draws = fp.draw_transforms(g, steps, spec)[:, 2:4].tolist()  # scale, angle
    values = iter([np.float64(v) if i == 0 else v for row in draws for i, v in enumerate(row)])
    monkeypatch.setattr(lt.np.random, "choice", lambda options: next(values))

    def param_f():
        params, image_f = param.image(size)
        with torch.no_grad():
            params[0].copy_(start)
        return params, image_f

    def crop(x):
        o = (x.shape[-1] - size) // 2
        return x[..., o:o + size, o:o + size]

    out = render.render_vis(model, objective, param_f=param_f,
                            transforms=[lt.random_scale(list(cfg.scales)), lt.random_rotate(list(cfg.angles)), crop],
                            thresholds=(steps,), show_image=False, progress=False, fixed_image_size=size)
    monkeypatch.undo()
    return torch.from_numpy(out[0]).permute(0, 3, 1, 2)
