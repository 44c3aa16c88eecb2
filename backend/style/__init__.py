"""The stylization engine: CLIP guidance, the UV-space style network with bias
mappers, its starting point, few-step adaptation, Reptile meta-learning and baking.

Module map: ``config`` (the one settings factory: presets in ``data/presets/``,
bounded overrides, checkpoint keys), ``guidance`` (CLIP models), ``color`` (the
torch linear <-> sRGB conversion), ``losses``, ``augment``, ``net``, ``uvmaps``
(UV-space rasterization and vertex sampling), ``context`` (one avatar as tensors,
and how it is rendered), ``start`` (the starting point), ``adapt``, ``meta``, ``bake``, ``rig``
(default cameras), ``engine`` (the whole stylize/prepare run shared by the CLI and
the server), ``jobs`` (server handlers) and ``cli``. Request contracts and their
bounds: :mod:`shared.stylize`.
Importing this package does not import torch; the submodules do.
"""
