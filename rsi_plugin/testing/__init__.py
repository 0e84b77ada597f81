r"""testing: shared test helpers and independent reference implementations (as
``captum.testing``). The library never imports this package; tests and benchmarks do.

==========================  ================================================================
:mod:`.hooks_reference`     residual nodes read with plain ``register_forward_hook``: the
                            reference every reader is checked against
:mod:`.lucent_reference`    Lucent's own ``render_vis`` replayed on one channel
:mod:`.state`               :func:`model_state` / :func:`assert_same_state`: a call leaves the
                            model as it found it
:mod:`.models`              small seeded models and data (``small_resnet``, ``random_data``)
:mod:`.processes`           ``rsi`` run as several forked ranks of one process group (gloo)
==========================  ================================================================

Import from the modules (``from rsi_plugin.testing.state import assert_same_state``).
"""
