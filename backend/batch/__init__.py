"""Catalogue batches: avatars x styles, prepare-then-stylize, resumable, locally or on Ray.

    plan     tasks and their content keys; what is already done (pure)
    run      runs tasks on a runner (in-process, or backend.cluster's Ray pool)
    report   summary.csv and one contact sheet per avatar
    cli      ``metamorph batch``
"""
