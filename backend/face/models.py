"""The face models, loaded lazily and kept once per process.

Each getter returns ``(model, lock)``; callers hold the lock while running the model
(MediaPipe graphs and dlib objects are not safe to call from two threads at once).
mediapipe and dlib are imported inside the getters: they are heavy and only the photo
and expression features need them.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path

from shared.errors import Internal

# dlib files (face-recognition-models): the 5-point aligner and the ResNet descriptor only;
# the 68-point predictor in the same package must never be used (non-commercial training data).
DLIB_ALIGNER = "shape_predictor_5_face_landmarks.dat"
DLIB_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
MIN_DETECTION_CONFIDENCE = 0.5


def dlib_model_dir() -> Path:
    """Folder of the face-recognition-models files (its __init__ needs the gone pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise Internal("The 'face-recognition-models' package is not installed: run the README's set-up.")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@functools.lru_cache(maxsize=None)
def face_mesh():
    """MediaPipe face mesh for still images: 478 landmarks (refine_landmarks), one face per call
    (callers crop to the face they want)."""
    import mediapipe as mp  # heavy, optional: only face features need it

    m = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                        min_detection_confidence=MIN_DETECTION_CONFIDENCE)
    return m, threading.Lock()


def face_mesh_tracker():
    """A *new* MediaPipe face mesh in tracking mode (video: landmarks follow from frame to frame).
    Not cached: tracking state belongs to one video. Close it with ``.close()``."""
    import mediapipe as mp  # heavy, optional

    return mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                                           min_detection_confidence=MIN_DETECTION_CONFIDENCE,
                                           min_tracking_confidence=0.5)


@functools.lru_cache(maxsize=None)
def face_detector():
    """MediaPipe face detection, full-range model (faces up to ~5 m away)."""
    import mediapipe as mp  # heavy, optional

    m = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                  min_detection_confidence=MIN_DETECTION_CONFIDENCE)
    return m, threading.Lock()


@functools.lru_cache(maxsize=None)
def selfie_segmenter():
    """MediaPipe selfie segmentation (general model, 256x256 internally)."""
    import mediapipe as mp  # heavy, optional

    return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0), threading.Lock()


@functools.lru_cache(maxsize=None)
def dlib_models():
    """``((detector, aligner_5pt, descriptor_net), lock)`` from dlib + face-recognition-models."""
    import dlib  # heavy, optional

    d = dlib_model_dir()
    for name in (DLIB_ALIGNER, DLIB_DESCRIPTOR):
        if not (d / name).is_file():
            raise Internal(f"dlib model file {d / name} is missing: reinstall 'face-recognition-models'.")
    models = (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(d / DLIB_ALIGNER)),
              dlib.face_recognition_model_v1(str(d / DLIB_DESCRIPTOR)))
    return models, threading.Lock()
