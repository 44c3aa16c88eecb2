"""Offline face models and pure functions on their outputs (photo fit, expression capture, measures).

All models ship with the installed wheels (``mediapipe==0.10.21`` face mesh / face detection /
selfie segmentation; dlib's frontal detector, 5-point aligner and 128-D ResNet descriptor from
``face-recognition-models``; never dlib's 68-point model). They load lazily on first use and are
kept once per process (:mod:`backend.face.models`); every call is serialised per model by a lock,
so the server's worker thread and a CLI can share them.

Images everywhere: ``[H,W,3]`` uint8 sRGB, row 0 at the top. Landmarks: ``[478,3]`` float32 in
pixels (x right, y down; z in pixel units, MediaPipe's relative depth, smaller = nearer).

    from backend.face import landmarks, regions, identity, analysis, measures

    boxes = landmarks.detect_faces(img)                # [FaceBox] largest first
    lm = landmarks.face_landmarks(img, box=boxes[0])   # [478,3] or None
    seq = landmarks.landmarks_sequence(frames)         # [N,478,3], NaN rows where no face (video tracking)
    m = regions.region_masks(img, lm, person=regions.person_mask(img))   # {"skin","lips","eyes",...}: [H,W] bool
    cols = regions.region_colors(img, m)               # {"skin": [3] sRGB 0..1, ...}
    d = identity.descriptor(img)                       # [128] float32 or None
    identity.distance(d1, d2)                          # Euclidean (dlib: < 0.6 same person)
    a = analysis.analyze_photo(img, face_index=None)   # checks (typed errors) + all of the above
    measures.independent_measures(orig_frames, styl_frames)   # identity + expression agreement
"""
