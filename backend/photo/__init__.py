"""Avatar from a photo: fit the parametric sample avatar to a frontal selfie.

    synth      the true engine: frontal camera, renders with part labels (the imitator's teacher)
    imitator   the differentiable imitator network, its training data, training and cache
    fit        relaxed fit (temperature-annealed one-hot, expression weights, prior)
    search     discrete search over the 36 asset combinations with true renders
    pipeline   avatar_from_photo(): photo -> analysis -> fit -> search -> avatar
    sheet      fit_sheet.png
    jobs, cli  the server job ``avatar_from_photo`` and ``metamorph avatar-from-photo``
"""
