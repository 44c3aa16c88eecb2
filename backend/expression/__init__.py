"""Expression animation: ARKit weight tracks from a motion text or from a photo/video.

From text (:func:`backend.expression.text.run_expression_from_text`)
    codebook   sparse ARKit weight vectors over the avatar's blendshapes, rendered from a few
               frontal views and embedded by the guidance model (cached per avatar + model)
    candidates relative CLIP scores (neutral face / neutral text as anchors), top 40,
               near-duplicates dropped, top K = 5 (round-robin over "..., then ..." phrases)
    motion     a clamped cubic B-spline track optimized with the published losses (rank-weighted
               min-over-frames pose distance, CLIP on sampled frames weighted toward later
               frames, a small motion reward); blinks by a prior; linear baseline reported

From a photo or a video (:func:`backend.expression.capture.run_expression_from_video`)
    MediaPipe face mesh (:mod:`backend.face.landmarks`) -> pose-free features and head
    rotation (:mod:`.features`) -> an MLP trained on the engine's own renders with known
    random weights (:mod:`.regressor`, cached) -> temporal smoothing

Modules: posing (weights -> renders), codebook, motion, text, features, regressor, capture,
media (image / folder / PyAV video input), outputs (track.json, GLB, strip), cli, jobs.
Contracts: :mod:`shared.expression`; ARKit names and name mapping: :mod:`shared.arkit`.
"""
