"""Face front end on real rendered frames: Haar detection, window crops, the flagged fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from migr_rt.training.synth.corpus import SynthConfig, render_clip

from migr_rt.face import FaceBox, HaarFaceDetector, center_box, crop_faces, square_box


@pytest.fixture(scope="module")
def rendered():
    clip = render_clip(SynthConfig(n=1, seed=5), 0)
    return clip.frames, FaceBox(*clip.record["face_box"])


def iou(a: FaceBox, b: FaceBox) -> float:
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a.area + b.area - inter)


def test_haar_finds_the_rendered_face(rendered):
    frames, truth = rendered
    boxes = HaarFaceDetector().detect(frames[len(frames) // 2])
    assert boxes, "no face found"
    assert iou(boxes[0], truth) > 0.4


def test_detection_works_on_a_large_frame(rendered):
    frames, truth = rendered
    big = np.kron(frames[len(frames) // 2], np.ones((6, 6, 1), dtype=np.uint8))  # 960x960
    boxes = HaarFaceDetector().detect(big)
    assert boxes
    scaled = FaceBox(truth.x * 6, truth.y * 6, truth.w * 6, truth.h * 6)
    assert iou(boxes[0], scaled) > 0.4


def test_window_crop_is_square_and_centred_on_the_face(rendered):
    frames, truth = rendered
    crops = crop_faces(frames[:8], HaarFaceDetector(), 64)
    assert crops.crops.shape == (8, 64, 64, 3) and crops.crops.dtype == np.uint8
    assert not crops.fallback
    assert crops.box.w == crops.box.h
    cx, cy = crops.box.x + crops.box.w / 2, crops.box.y + crops.box.h / 2
    assert abs(cx - (truth.x + truth.w / 2)) < truth.w * 0.25
    assert abs(cy - (truth.y + truth.h / 2)) < truth.h * 0.25


def test_no_face_gives_a_flagged_centre_crop():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, size=(6, 120, 160, 3), dtype=np.uint8)
    crops = crop_faces(noise, HaarFaceDetector(), 32)
    assert crops.fallback
    assert crops.box == center_box(120, 160)
    assert crops.crops.shape == (6, 32, 32, 3)
    # deterministic
    assert np.array_equal(crop_faces(noise, HaarFaceDetector(), 32).crops, crops.crops)
    # no detector: the caller vouches for the frames, same crop, not flagged
    trusted = crop_faces(noise, None, 32)
    assert not trusted.fallback and np.array_equal(trusted.crops, crops.crops)


class FixedDetector:
    """A stand-in for another detector implementation (e.g. a robot's own perception)."""

    def __init__(self, box: FaceBox) -> None:
        self.box = box

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        return [self.box]


def test_pluggable_detector_decides_the_crop():
    frames = np.zeros((4, 100, 100, 3), dtype=np.uint8)
    frames[:, 10:30, 60:80] = 255
    crops = crop_faces(frames, FixedDetector(FaceBox(60, 10, 20, 20)), 16, margin=0.0)
    assert crops.box == FaceBox(60, 10, 20, 20, 1.0)
    assert (crops.crops == 255).all()


def test_square_box_is_shifted_into_the_frame():
    box = square_box(FaceBox(90, 0, 20, 30), height=100, width=100, margin=0.5)
    assert box.w == box.h == 60
    assert box.x + box.w <= 100 and box.y >= 0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="RGB uint8"):
        HaarFaceDetector().detect(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="non-empty"):
        crop_faces(np.zeros((0, 10, 10, 3), dtype=np.uint8), None, 8)
    with pytest.raises(FileNotFoundError, match="cascade not found"):
        HaarFaceDetector("no_such_cascade.xml")


def test_cascade_folder_from_the_environment(rendered, tmp_path, monkeypatch):
    """An OpenCV without cascades (5.x) is served from $MIGR_RT_HAAR_CASCADES: the same detector, same boxes."""
    import shutil

    import cv2

    if not hasattr(cv2, "data"):
        pytest.skip("this OpenCV ships no cascades to copy")
    shutil.copyfile(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml", tmp_path / "faces.xml")
    monkeypatch.delenv("MIGR_RT_HAAR_CASCADES", raising=False)
    with pytest.raises(FileNotFoundError, match="MIGR_RT_HAAR_CASCADES"):
        HaarFaceDetector("faces.xml")
    monkeypatch.setenv("MIGR_RT_HAAR_CASCADES", str(tmp_path))
    frames, truth = rendered
    frame = frames[len(frames) // 2]
    boxes = HaarFaceDetector("faces.xml").detect(frame)
    assert boxes and boxes == HaarFaceDetector().detect(frame)
    assert iou(boxes[0], truth) > 0.4


# --- tracking ---------------------------------------------------------------------------------------------------
class CountingHaar(HaarFaceDetector):
    """The real cascade, counting which kind of search each frame got."""

    def __init__(self) -> None:
        super().__init__()
        self.full = self.near = 0

    def detect(self, frame):
        self.full += 1
        return super().detect(frame)

    def detect_near(self, frame, box, **kwargs):
        self.near += 1
        return super().detect_near(frame, box, **kwargs)


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_tracked_boxes_follow_the_full_scans(seed):
    from migr_rt.face import TrackingFaceDetector

    frames = render_clip(SynthConfig(n=1, seed=seed), 0).frames[::6]
    full = HaarFaceDetector()
    inner = CountingHaar()
    tracker = TrackingFaceDetector(inner, refresh=4)
    for frame in frames:
        expected, got = full.detect(frame), tracker.detect(frame)
        assert got and expected
        assert iou(got[0], expected[0]) > 0.7
    # one full scan every `refresh` frames, the frames between searched near the last face
    assert inner.full == -(-len(frames) // 4) and inner.near == len(frames) - inner.full
    assert tracker.full_scans == inner.full and tracker.tracked == inner.near


def test_tracker_rescans_when_the_face_is_lost_the_frame_changes_or_reset(rendered):
    from migr_rt.face import TrackingFaceDetector

    frames, truth = rendered
    face = frames[len(frames) // 2]
    noise = np.random.default_rng(0).integers(0, 255, face.shape, dtype=np.uint8)
    inner = CountingHaar()
    tracker = TrackingFaceDetector(inner, refresh=100)
    assert tracker.detect(face) and inner.full == 1
    assert tracker.detect(face) and (inner.full, inner.near) == (1, 1)
    assert tracker.detect(noise) == []  # searched near, nothing: a full scan, also nothing
    assert (inner.full, inner.near) == (2, 2)
    assert tracker.detect(face) and (inner.full, inner.near) == (3, 2)  # nothing to follow: full scan
    big = np.kron(face, np.ones((2, 2, 1), dtype=np.uint8))
    found = tracker.detect(big)  # another frame size: full scan
    assert found and iou(found[0], FaceBox(truth.x * 2, truth.y * 2, truth.w * 2, truth.h * 2)) > 0.4
    assert (inner.full, inner.near) == (4, 2)
    tracker.reset()
    assert tracker.detect(face) and (inner.full, inner.near) == (5, 2)


def test_detect_near_finds_the_face_only_near_the_box(rendered):
    frames, _ = rendered
    face = frames[len(frames) // 2]
    det = HaarFaceDetector()
    (box,) = det.detect(face)[:1]
    near = det.detect_near(face, box)
    assert near and iou(near[0], box) > 0.7
    h, w = face.shape[:2]
    corner = FaceBox(0, 0, 12, 12)  # a tiny box in the corner: the face is neither near nor of that size
    assert det.detect_near(face, corner) == []
    assert det.detect_near(face, FaceBox(w - 20, h - 20, 20, 20)) == []


def test_detect_near_on_a_downscaled_frame_finds_the_full_scans_face(rendered):
    frames, _ = rendered
    big = np.kron(frames[len(frames) // 2], np.ones((4, 4, 1), dtype=np.uint8))  # 640x640: scanned at 320
    det = HaarFaceDetector()
    (box,) = det.detect(big)[:1]
    near = det.detect_near(big, box)
    assert near and iou(near[0], box) > 0.7


def test_detect_near_refuses_an_empty_box_and_ignores_one_off_the_frame(rendered):
    frames, _ = rendered
    face = frames[len(frames) // 2]
    det = HaarFaceDetector()
    with pytest.raises(ValueError, match="positive size"):
        det.detect_near(face, FaceBox(10, 10, 0, 0))
    assert det.detect_near(face, FaceBox(1000, 1000, 80, 80)) == []
    assert det.detect_near(face, FaceBox(-500, -500, 60, 60)) == []


def test_fresh_trackers_share_the_cascade_not_the_face(rendered):
    from migr_rt.face import TrackingFaceDetector

    frames, _ = rendered
    inner = CountingHaar()
    first = TrackingFaceDetector(inner, refresh=5)
    assert first.detect(frames[0]) and first.detect(frames[1]) and (inner.full, inner.near) == (1, 1)
    second = first.fresh()
    assert second.inner is inner and second.refresh == 5
    assert second.detect(frames[2]) and (inner.full, inner.near) == (2, 1)  # no face to follow yet: full scan
    assert first.detect(frames[3]) and (inner.full, inner.near) == (2, 2)  # the first still follows its own


def test_tracker_rejects_bad_settings():
    from migr_rt.face import TrackingFaceDetector

    with pytest.raises(ValueError, match="refresh must be >= 1"):
        TrackingFaceDetector(refresh=0)
    with pytest.raises(ValueError, match="size_range must bracket 1"):
        TrackingFaceDetector(size_range=(1.2, 1.5))

    class NoRegions:
        def detect(self, frame):
            return []

    with pytest.raises(TypeError, match="NoRegions cannot search near a box"):
        TrackingFaceDetector(NoRegions())
