"""The stylization engine: CLIP guidance, the UV-space style network with bias
mappers, fitting, few-step adaptation, Reptile meta-learning and baking.

Module map: ``guidance`` (CLIP models), ``losses``, ``augment``, ``net``,
``uvmaps`` (UV-space rasterization and vertex sampling), ``fitting``, ``adapt``,
``meta``, ``bake``, ``rig`` (default cameras), ``engine`` (the whole stylize
run shared by the CLI and the server), ``jobs`` and ``cli``.
Importing this package does not import torch; the submodules do.
"""
