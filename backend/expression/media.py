"""Reading capture input: one image, a folder of images, or a video file (decoded with PyAV).

Everything comes back as ``[N,H,W,3]`` uint8 sRGB frames (row 0 at the top) plus a frame
rate, downscaled so the longest side is at most ``max_side`` (the face mesh works on
192-pixel crops; big frames only cost decoding and memory).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.errors import InvalidParams, TooLarge
from shared.expression import CAPTURE_MAX_SIDE as DEFAULT_MAX_SIDE
from shared.expression import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


def _fit(img: np.ndarray, max_side: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    return np.asarray(Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


def read_image(path, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """One image file -> [H,W,3] uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return _fit(np.asarray(im.convert("RGB"), np.uint8), max_side)
    except (OSError, UnidentifiedImageError) as e:
        raise InvalidParams(f"Cannot read the image '{path}': {e}.") from e


def _same_size(frames: list[np.ndarray]) -> np.ndarray:
    from PIL import Image

    h, w = frames[0].shape[:2]
    return np.stack([f if f.shape[:2] == (h, w) else np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR))
                     for f in frames])


def read_video(path, max_frames: int, max_side: int = DEFAULT_MAX_SIDE, fps: float | None = None
               ) -> tuple[np.ndarray, float]:
    """Decode a video file with PyAV -> ([N,H,W,3] uint8, frames per second).

    ``fps``: resample to this rate (keep every k-th frame; None = the file's rate).
    Raises TooLarge when the (resampled) clip has more than ``max_frames`` frames.
    """
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise InvalidParams(f"Cannot open the video '{path}': {e}.") from e
    with container:
        if not container.streams.video:
            raise InvalidParams(f"'{path}' has no video stream.")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 24)
        step = max(1, int(round(rate / fps))) if fps else 1
        out = []
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i % step:
                    continue
                if len(out) >= max_frames:
                    raise TooLarge(f"'{path}' has more than {max_frames} frames at {rate / step:g} fps; trim it or "
                                   f"pass a lower --fps.")
                out.append(_fit(frame.to_ndarray(format="rgb24"), max_side))
        except av.error.FFmpegError as e:
            raise InvalidParams(f"Cannot decode the video '{path}': {e}.") from e
    if not out:
        raise InvalidParams(f"The video '{path}' holds no frames.")
    return _same_size(out), rate / step


def read_frames(path, max_frames: int, max_side: int = DEFAULT_MAX_SIDE, fps: float | None = None
                ) -> tuple[np.ndarray, float | None, bool]:
    """An image, an image folder (sorted by name) or a video -> (frames [N,H,W,3] uint8,
    fps (None for images), still (True for images: frames are unrelated photos))."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise InvalidParams(f"The folder '{p}' holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        if len(files) > max_frames:
            raise TooLarge(f"The folder '{p}' holds {len(files)} images; the limit is {max_frames}.")
        return _same_size([read_image(f, max_side) for f in files]), None, True
    if not p.is_file():
        raise InvalidParams(f"'{p}' is not a file or folder: give an image, an image folder or a video.")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return read_image(p, max_side)[None], None, True
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        frames, rate = read_video(p, max_frames, max_side, fps)
        return frames, rate, False
    raise InvalidParams(f"'{p.name}': unknown input type '{p.suffix}'; give an image ({', '.join(IMAGE_EXTENSIONS)}), "
                        f"a folder of images or a video ({', '.join(VIDEO_EXTENSIONS)}).")


def write_video(path, frames: np.ndarray, fps: float = 24.0, codec: str = "mpeg4") -> str:
    """Encode [N,H,W,3] uint8 frames as a video with PyAV (tests and benchmarks make clips with it)."""
    import av

    h, w = frames.shape[1:3]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=int(round(fps)))
        s.width, s.height, s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        for f in frames:
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:s.height, :s.width]), format="rgb24")
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return str(path)
