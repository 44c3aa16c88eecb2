"""Avatar from text (the text-driven generation method, adapted to the sample head avatar).

    sampling   stratified parameter vectors of the sample engine and k-means entries (numpy)
    views      renders of whole avatars (default-rig views, expressions, grey / textured)
    codebook   the shape codebook: render + embed every entry, cached per guidance model,
               engine version and settings under cache_dir("textavatar")
    query      relative (against the neutral anchor) and absolute codebook queries
    augment    sculpting augmentations: lights round the camera, backgrounds, face close-ups
    sculpt     the sculpt-and-texture loop the stylization engine runs (run_stylize's adapt_fn)
    sheet      the contact sheet (anchor | chosen entry | final)
    pipeline   avatar_from_text(): all of it, for the CLI and the server job
    standin    a deterministic stand-in encoder for verifying the algorithms without weights
    jobs, cli  the ``avatar_from_text`` server job and ``metamorph avatar-from-text``
"""
