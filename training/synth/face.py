"""Procedural talking face: FACS-like expression parameters drawn with OpenCV.

The face is vector-drawn in face-local coordinates (pixels of a 160 px frame,
origin at the face centre, y down), transformed by the per-frame pose and
rasterised with anti-aliased polygons. Soft shading (dark eye sockets, bright
nose bridge and cheeks, darker face rim) is applied as a blurred multiplier:
besides looking less flat, it is what makes OpenCV's Haar frontal-face cascade,
the runtime's face front end, fire on these faces.

Time: the expression ramps from neutral (onset) to its apex and holds; idle
head motion, blinks and a mouth that opens with the voice's syllable envelope
make it a talking face rather than a still.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from migr_rt.training.synth.params import param, scaled

#: Geometry below is in pixels of a frame of this size; other sizes scale it.
REFERENCE_SIZE = 160
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Expression:
    """Expression parameters; 0 everywhere is the relaxed face.

    Each field is one muscle-like movement, so a cue description can name
    exactly what was drawn.
    """

    brow_raise: float = param(-1.0, 1.0)  # + brows up, - brows down
    brow_knit: float = param(0.0, 1.0)  # inner brows pulled together (and down)
    brow_inner: float = param(0.0, 1.0)  # inner brow ends raised (oblique, "worried")
    eye_open: float = param(-1.0, 1.0)  # + widened, - narrowed (both lids)
    lid_droop: float = param(0.0, 1.0)  # upper lids lowered
    nose_wrinkle: float = param(0.0, 1.0)
    upper_lip_raise: float = param(0.0, 1.0)
    cheek_raise: float = param(0.0, 1.0)  # cheeks up, lower lids pushed up, deep folds
    mouth_curve: float = param(-1.0, 1.0)  # + corners up, - corners down
    lip_press: float = param(0.0, 1.0)  # lips thinned and pressed shut
    lip_stretch: float = param(0.0, 1.0)  # lips pulled sideways, slightly open
    mouth_round: float = param(0.0, 1.0)  # narrow, rounded (O-shaped) opening
    jaw_drop: float = param(0.0, 1.0)
    head_down: float = param(0.0, 1.0)


#: Prototypical (FACS-like) apex expression per emotion.
EXPRESSION_PROTOTYPES: dict[str, Expression] = {
    "angry": Expression(brow_raise=-1.0, brow_knit=1.0, eye_open=-0.75, lip_press=1.0),
    "disgust": Expression(nose_wrinkle=1.0, upper_lip_raise=1.0, eye_open=-0.55, brow_raise=-0.4, mouth_curve=-0.35),
    "fear": Expression(brow_raise=0.7, brow_knit=0.8, brow_inner=0.5, eye_open=1.0, lip_stretch=1.0),
    "happy": Expression(mouth_curve=1.0, cheek_raise=1.0),
    "neutral": Expression(),
    "sad": Expression(brow_inner=1.0, brow_knit=0.3, lid_droop=0.8, mouth_curve=-1.0, head_down=0.6),
    "surprise": Expression(brow_raise=1.0, eye_open=0.9, jaw_drop=1.0, mouth_round=1.0),
}

_HAIR_COLOURS = np.array(
    [(20, 16, 14), (45, 30, 22), (70, 46, 28), (100, 66, 38), (135, 100, 60), (78, 76, 74), (95, 38, 20)],
    dtype=np.float32,
)
_IRIS_COLOURS = np.array([(70, 45, 25), (40, 28, 20), (70, 100, 140), (80, 105, 70)], dtype=np.float32)


@dataclass(frozen=True)
class FaceIdentity:
    """Who is on screen and how it is filmed: constant over a clip."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    clothes: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 cropped
    face_w: float  # half-width of the face oval
    face_h: float  # half-height of the face oval
    jaw_taper: float  # how much the lower face narrows
    eye_gap: float  # half-distance between eye centres
    talk_amp: float  # mouth opening at full syllable energy (px)
    bg_a: tuple[float, float, float]
    bg_b: tuple[float, float, float]
    bg_angle: float
    offset: tuple[float, float]  # face centre offset from frame centre (px)
    scale: float
    roll: float  # radians
    light: float  # -1 (light from the left) .. 1 (from the right)
    light_strength: float
    noise: float  # sensor noise std (grey levels)
    background_seed: int


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw a person, framing and lighting."""
    tone = rng.uniform(0.0, 1.0)  # 0 light .. 1 dark skin
    skin = np.array([235, 196, 170]) * (1 - tone) + np.array([105, 70, 50]) * tone
    skin = skin * rng.uniform(0.94, 1.06, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    lips = skin * np.array([0.80, 0.55, 0.55]) + np.array([20, 0, 5])
    bg_a, bg_b = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    return FaceIdentity(
        skin=_rgb(skin),
        hair=_rgb(hair),
        iris=_rgb(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]),
        lips=_rgb(lips),
        clothes=_rgb(rng.uniform(20, 230, 3)),
        hair_style=int(rng.integers(3)),
        face_w=float(rng.uniform(31.5, 36.0)),
        face_h=float(rng.uniform(42.0, 46.0)),
        jaw_taper=float(rng.uniform(0.12, 0.3)),
        eye_gap=float(rng.uniform(12.5, 14.0)),
        talk_amp=float(rng.uniform(3.5, 5.5)),
        bg_a=_rgb(bg_a),
        bg_b=_rgb(bg_b),
        bg_angle=float(rng.uniform(0, 2 * math.pi)),
        offset=(float(rng.uniform(-8, 8)), float(rng.uniform(-6, 8))),
        scale=float(rng.uniform(1.0, 1.15)),
        roll=float(np.deg2rad(rng.uniform(-5, 5))),
        light=float(rng.uniform(-1, 1)),
        light_strength=float(rng.uniform(0.05, 0.2)),
        noise=float(rng.uniform(1.0, 3.5)),
        background_seed=int(rng.integers(2**31)),
    )


def _rgb(values: np.ndarray) -> tuple[float, float, float]:
    v = np.clip(np.asarray(values, dtype=float), 0, 255)
    return (float(v[0]), float(v[1]), float(v[2]))


@dataclass(frozen=True)
class FaceDynamics:
    """Per-frame timing: expression weight (onset ramp to apex), idle pose and blinks."""

    weight: np.ndarray  # (T,) in [0, 1]
    dx: np.ndarray  # (T,) px
    dy: np.ndarray  # (T,) px
    droll: np.ndarray  # (T,) radians
    blink: np.ndarray  # (T,) 0 open .. 1 closed

    @property
    def apex_frame(self) -> int:
        """First frame at which the expression has reached its apex."""
        return int(np.argmax(self.weight >= self.weight.max() - 1e-3))


def sample_dynamics(rng: np.random.Generator, n_frames: int, fps: float) -> FaceDynamics:
    """Onset in the first 0.35 s, a 0.25-0.55 s ramp, then hold; idle sway and 0-2 blinks."""
    t = np.arange(n_frames) / fps
    onset = rng.uniform(0.05, 0.35)
    ramp = rng.uniform(0.25, 0.55)
    u = np.clip((t - onset) / ramp, 0.0, 1.0)
    weight = u * u * (3 - 2 * u)
    sway = []
    for amp in (0.9, 0.7, np.deg2rad(1.2)):
        f, ph = rng.uniform(0.3, 0.9), rng.uniform(0, 2 * math.pi)
        sway.append(amp * np.sin(2 * math.pi * f * t + ph) + amp * 0.3 * np.sin(2 * math.pi * 2.3 * f * t + 1.7 * ph))
    blink = np.zeros(n_frames)
    profile = np.array([0.5, 1.0, 0.7, 0.3])
    for _ in range(int(rng.poisson(0.35 * n_frames / fps))):
        start = int(rng.integers(0, max(1, n_frames - len(profile))))
        seg = blink[start : start + len(profile)]
        np.maximum(seg, profile[: len(seg)], out=seg)
    return FaceDynamics(weight=weight, dx=sway[0], dy=sway[1], droll=sway[2], blink=blink)


@dataclass(frozen=True)
class FaceRender:
    """The rendered frames, the face oval's box at the apex frame and that frame's index."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    face_box: tuple[int, int, int, int]  # x, y, w, h
    apex_frame: int


def render_face(
    expression: Expression,
    identity: FaceIdentity,
    dynamics: FaceDynamics,
    talk: np.ndarray,
    *,
    size: int = REFERENCE_SIZE,
    rng: np.random.Generator,
) -> FaceRender:
    """Render every frame; ``talk`` (one value per frame in [0, 1]) opens the mouth with the voice.

    ``rng`` only draws the sensor noise, so the geometry is a pure function of
    the other arguments.
    """
    n = len(dynamics.weight)
    talk = np.asarray(talk, dtype=float)
    if talk.shape != (n,):
        raise ValueError(f"talk needs one value per frame ({n}), got shape {talk.shape}")
    painter = _FacePainter(identity, size)
    painter.set_pose(0.0, 0.0, 0.0, 0.0)
    background = painter.paint_body(_background(identity, size))  # the body does not sway with the head
    light = _light_gradient(identity, size)
    pad = 8
    bank = np.round(rng.normal(0.0, identity.noise, (size + 2 * pad, size + 2 * pad, 3))).astype(np.int16)
    offsets = rng.integers(0, 2 * pad + 1, (n, 2))
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    apex = dynamics.apex_frame
    box = (0, 0, 0, 0)
    for k in range(n):
        w = float(dynamics.weight[k])
        painter.set_pose(dynamics.dx[k], dynamics.dy[k], dynamics.droll[k], expression.head_down * w)
        img, shade, oval = painter.paint(scaled(expression, w), float(talk[k]), float(dynamics.blink[k]), background)
        if k == apex:
            box = _box(oval, size)
        shade = cv2.cvtColor(cv2.multiply(shade, light, scale=1 / 128), cv2.COLOR_GRAY2RGB)
        img = cv2.multiply(img, shade, scale=1 / 128)
        oy, ox = offsets[k]
        frames[k] = cv2.add(img, bank[oy : oy + size, ox : ox + size], dtype=cv2.CV_8U)
    return FaceRender(frames=frames, face_box=box, apex_frame=apex)


def _box(points: np.ndarray, size: int) -> tuple[int, int, int, int]:
    x0, y0 = np.clip(np.floor(points.min(axis=0)), 0, size - 1).astype(int)
    x1, y1 = np.clip(np.ceil(points.max(axis=0)), 0, size - 1).astype(int)
    return int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)


def _background(identity: FaceIdentity, size: int) -> np.ndarray:
    """A two-colour gradient with a few soft blobs (uint8 RGB), fixed for the clip."""
    rng = np.random.default_rng(identity.background_seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    u = np.clip(0.5 + xx * math.cos(identity.bg_angle) + yy * math.sin(identity.bg_angle), 0, 1)[..., None]
    img = np.asarray(identity.bg_a, np.float32) * (1 - u) + np.asarray(identity.bg_b, np.float32) * u
    blobs = np.zeros((size, size, 3), np.float32)
    for _ in range(3):
        c = (int(rng.integers(size)), int(rng.integers(size)))
        cv2.circle(
            blobs, c, int(rng.integers(size // 8, size // 3)), tuple(float(v) for v in rng.uniform(-40, 40, 3)), -1
        )
    return np.clip(img + cv2.GaussianBlur(blobs, (0, 0), size / 12), 0, 255).astype(np.uint8)


def _light_gradient(identity: FaceIdentity, size: int) -> np.ndarray:
    """Side light as a uint8 multiplier map (128 = 1.0) over the whole frame."""
    xs = (np.arange(size, dtype=np.float32) - size / 2) / (size / 2)
    row = 128 * (1 + identity.light_strength * identity.light * xs)
    return np.ascontiguousarray(np.broadcast_to(np.clip(row, 0, 255).astype(np.uint8), (size, size)))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # cached and shared between calls
    return a


@cache
def _unit_circle(n: int, t0: float, t1: float) -> np.ndarray:
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * math.pi - 1e-9)
    return _frozen(np.stack([np.cos(t), np.sin(t)], axis=1))


@cache
def _bezier_basis(n: int) -> np.ndarray:
    u = np.linspace(0.0, 1.0, n)[:, None]
    return _frozen(np.hstack([(1 - u) ** 2, 2 * (1 - u) * u, u**2]))


@cache
def _bezier_tangent_basis(n: int) -> np.ndarray:
    u = np.linspace(0.0, 1.0, n)[:, None]
    return _frozen(np.hstack([-2 * (1 - u), 2 * (1 - 2 * u), 2 * u]))


def _ellipse(
    cx: float, cy: float, ax: float, ay: float, n: int = 24, t0: float = 0.0, t1: float = 2 * math.pi
) -> np.ndarray:
    return _unit_circle(n, t0, t1) * (ax, ay) + (cx, cy)


def _curve(p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], n: int = 9) -> np.ndarray:
    """Quadratic curve from p0 to p2 that passes through p1 at its middle."""
    return _bezier_basis(n) @ _control_points(p0, p1, p2)


def _control_points(p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float]) -> np.ndarray:
    ctrl = (2 * p1[0] - 0.5 * (p0[0] + p2[0]), 2 * p1[1] - 0.5 * (p0[1] + p2[1]))
    return np.array([p0, ctrl, p2], dtype=float)


class _DrawList:
    """Polygons and polylines in face-local coordinates, transformed together and drawn in order.

    Batching the transform keeps the per-frame cost in OpenCV rather than in
    Python: a frame is ~40 primitives.
    """

    def __init__(self) -> None:
        self.shapes: list[np.ndarray] = []
        self.styles: list[tuple[tuple[float, ...], int]] = []  # (colour, thickness; -1 = filled)
        self._packed: tuple[np.ndarray, list[int]] | None = None  # cached for lists drawn every frame

    def fill(self, pts: np.ndarray, colour: tuple[float, ...]) -> None:
        self.shapes.append(pts)
        self.styles.append((colour, -1))
        self._packed = None

    def line(self, pts: np.ndarray, colour: tuple[float, ...], width: int) -> None:
        self.shapes.append(pts)
        self.styles.append((colour, width))
        self._packed = None

    def draw(self, img: np.ndarray, m: np.ndarray, antialias: bool) -> None:
        if not self.shapes:
            return
        if self._packed is None:
            self._packed = (np.concatenate(self.shapes), np.cumsum([len(s) for s in self.shapes]).tolist())
        points, ends = self._packed
        ipts = np.round((points @ m[:, :2].T + m[:, 2]) * _ONE).astype(np.int32)
        kind = cv2.LINE_AA if antialias else cv2.LINE_8
        start = 0
        for end, (colour, width) in zip(ends, self.styles):
            poly = ipts[start:end]
            start = end
            if width < 0:
                cv2.fillPoly(img, [poly], colour, kind, _SHIFT)
            else:
                cv2.polylines(img, [poly], False, colour, width, kind, _SHIFT)


_MOUTH_X = np.linspace(-1.0, 1.0, 17)
_CUPID_BOW = 0.7 * np.exp(-((_MOUTH_X / 0.25) ** 2))  # dip in the middle of the upper lip


@dataclass(frozen=True)
class _MouthShape:
    """Where the mouth sits and how wide it is: fixed by the expression, unlike its opening."""

    y: float
    w: float
    yc: float  # corner height relative to the centre (negative = corners up)

    @classmethod
    def of(cls, e: Expression, fy: float) -> _MouthShape:
        return cls(
            y=22.0 + fy + 2.5 * e.jaw_drop,
            w=10.5
            * (1 + 0.38 * e.lip_stretch + 0.14 * max(e.mouth_curve, 0) - 0.38 * e.mouth_round - 0.1 * e.lip_press),
            yc=-4.5 * e.mouth_curve + 1.8 * e.lip_stretch,
        )


@dataclass(frozen=True)
class _Layers:
    """Cached geometry of one ``(expression, blink)`` state, in face-local coordinates."""

    below: _DrawList  # head, hair, eyes, brows, nose: drawn before the lips
    above: _DrawList  # folds and wrinkles: drawn after the lips
    shades: _DrawList  # soft light and shadow regions (values: 128 = unchanged)
    oval: np.ndarray
    mouth: _MouthShape


class _FacePainter:
    """Draws one frame: geometry from expression parameters, pose from identity plus idle motion."""

    def __init__(self, identity: FaceIdentity, size: int) -> None:
        self.id = identity
        self.size = size
        self.s = identity.scale * size / REFERENCE_SIZE
        skin = np.asarray(identity.skin, float)
        self.skin = skin
        self.c_skin = _col(skin)
        self.c_hair = _col(identity.hair)
        self.c_brow = _col(np.minimum(np.asarray(identity.hair) * 0.85, skin * 0.36))
        self.c_lips = _col(identity.lips)
        self.c_lipline = _col(np.asarray(identity.lips) * 0.45)
        self.c_iris = _col(identity.iris)
        self.thin = max(1, int(round(self.s)))
        self.m = np.zeros((2, 3))
        self._layers: dict[tuple[Expression, float], _Layers] = {}

    def set_pose(self, dx: float, dy: float, droll: float, head_down: float) -> None:
        """Face-local -> image transform for this frame (identity framing plus idle sway)."""
        idt, k = self.id, self.size / REFERENCE_SIZE
        roll = idt.roll + droll
        cx = self.size / 2 + (idt.offset[0] + dx) * k
        cy = self.size / 2 + (idt.offset[1] + dy + 2.0 + 3.0 * head_down) * k
        c, si = math.cos(roll) * self.s, math.sin(roll) * self.s
        self.m = np.array([[c, -si, cx], [si, c, cy]])

    def tone(self, k: float) -> tuple[float, float, float]:
        r, g, b = self.c_skin
        return (min(r * k, 255.0), min(g * k, 255.0), min(b * k, 255.0))

    def paint_body(self, background: np.ndarray) -> np.ndarray:
        """Neck and shoulders drawn once onto the clip's background at the current pose."""
        idt = self.id
        fw, fh = idt.face_w, idt.face_h
        d = _DrawList()
        d.fill(_ellipse(0, fh + 52, fw * 2.4, 34, 24), _col(idt.clothes))
        d.fill(
            np.array([[-fw * 0.42, fh * 0.4], [fw * 0.42, fh * 0.4], [fw * 0.5, fh + 30], [-fw * 0.5, fh + 30]]),
            self.tone(0.78),
        )
        img = background.copy()
        d.draw(img, self.m, antialias=True)
        return img

    def paint(
        self, e: Expression, talk: float, blink: float, background: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The drawn frame (uint8 RGB), its shading map (uint8, 128 = 1.0) and the face oval in image coordinates.

        Everything but the lips depends only on ``(e, blink)``, which is the
        same for every frame of the apex hold, so that geometry is cached.
        """
        key = (e, blink)
        layers = self._layers.get(key)
        if layers is None:
            layers = self._layers[key] = self._face_layers(e, blink)
        lips = _DrawList()
        opening = self._mouth(lips, e, layers.mouth, talk)
        img = background.copy()
        for d in (layers.below, lips, layers.above):
            d.draw(img, self.m, antialias=True)
        shade = self._shading(layers, opening)
        return img, shade, layers.oval @ self.m[:, :2].T + self.m[:, 2]

    def _face_layers(self, e: Expression, blink: float) -> _Layers:
        """Everything of a frame that does not follow the voice."""
        idt = self.id
        fw, fh = idt.face_w, idt.face_h
        hd = e.head_down
        fy = 3.0 * hd  # features slide down when the head tilts forward
        below, above = _DrawList(), _DrawList()
        if idt.hair_style == 1:
            below.fill(
                np.vstack(
                    [
                        _ellipse(0, -4, fw + 9, fh + 6, 24, math.pi, 2 * math.pi),
                        [[fw + 11, fh * 0.9], [-fw - 11, fh * 0.9]],
                    ]
                ),
                self.c_hair,
            )
        for sx in (-1, 1):
            below.fill(_ellipse(sx * (fw - 0.5), -3 + fy * 0.5, 4.5, 8.5, 12), self.tone(0.88))

        # face oval: the lower half lengthens and narrows with the jaw drop
        c, s = _unit_circle(48, 0.0, 2 * math.pi).T
        lower = s > 0
        ry = np.where(lower, fh * (1 + 0.12 * e.jaw_drop - 0.06 * hd), fh)
        rx = fw * (1 - np.where(lower, idt.jaw_taper * s**2 + 0.06 * e.jaw_drop, 0))
        oval = np.stack([rx * c, ry * s], axis=1)
        below.fill(oval, self.c_skin)

        self._forehead(below, e, fy)
        self._hair_front(below, fw, fh, hd)  # the fringe covers the top of the forehead
        self._eyes(below, e, blink, fy)
        self._brows(below, e, fy)  # after the eyes: lowered brows overlap the upper lids
        self._nose(below, e, fy)
        mouth = _MouthShape.of(e, fy)
        self._folds_and_wrinkles(above, e, fy, mouth)
        return _Layers(below, above, self._shades(e, oval), oval, mouth)

    def _forehead(self, d: _DrawList, e: Expression, fy: float) -> None:
        """Horizontal forehead wrinkles of raised brows."""
        if e.brow_raise > 0.05:
            for yy in (-24.5, -27.5, -30.5):
                d.line(
                    _curve((-12, yy + fy + 1), (0, yy + fy - 1), (12, yy + fy + 1), 7),
                    self.tone(1 - 0.18 * e.brow_raise),
                    1,
                )

    def _hair_front(self, d: _DrawList, fw: float, fh: float, hd: float) -> None:
        if self.id.hair_style == 2:  # cropped: a thin cap hugging the skull
            top = _ellipse(0, -2, fw + 1.5, fh + 2.5, 20, math.pi * 1.08, math.pi * 1.92)
            line = _curve((fw * 0.9, -fh * 0.55), (0, -fh * 0.78 + 4 * hd), (-fw * 0.9, -fh * 0.55))
        else:
            top = _ellipse(0, -3, fw + 3.5, fh + 5, 24, math.pi, 2 * math.pi)
            line = np.vstack(
                [
                    [[fw + 1, -6]],
                    _curve((fw - 2, -fh * 0.5), (0, -fh * 0.7 + 4 * hd), (-fw + 2, -fh * 0.5)),
                    [[-fw - 1, -6]],
                ]
            )
        d.fill(np.vstack([top, line]), self.c_hair)

    def _brows(self, d: _DrawList, e: Expression, fy: float) -> None:
        g = self.id.eye_gap
        base = -15.5 + fy - 3.5 * e.brow_raise
        th = np.linspace(1.9, 1.0, 9)[:, None]
        for sx in (-1, 1):
            inner = (sx * (g - 7.5 + 2.5 * e.brow_knit), base + 1.0 + 3.0 * e.brow_knit - 5.0 * e.brow_inner)
            mid = (sx * g, base - 1.8 - 1.5 * e.brow_inner)
            outer = (sx * (g + 8.5), base + 0.8 + 1.5 * e.brow_inner - 0.8 * e.brow_knit)
            ctrl = _control_points(inner, mid, outer)
            c = _bezier_basis(9) @ ctrl
            t = _bezier_tangent_basis(9) @ ctrl
            nrm = np.stack([-t[:, 1], t[:, 0]], axis=1) / np.linalg.norm(t, axis=1, keepdims=True)
            d.fill(np.vstack([c + nrm * th, (c - nrm * th)[::-1]]), self.c_brow)

    def _eyes(self, d: _DrawList, e: Expression, blink: float, fy: float) -> None:
        g = self.id.eye_gap
        open_ = 1 - blink
        hu = max(0.25, 3.6 * (1 + 0.4 * e.eye_open) * (1 - 0.55 * e.lid_droop) * open_)
        hl = max(0.2, 2.1 * (1 + 0.3 * e.eye_open) * (1 - 0.45 * e.cheek_raise) * open_)
        ey = -6.0 + fy
        gaze_y = 1.2 * e.head_down + 0.6 * e.lid_droop
        r = 3.1
        u = np.linspace(0.0, 1.0, 11)
        up_shape = np.sin(np.pi * u) ** 0.8
        low_shape = np.sin(np.pi * u) ** 0.9
        for sx in (-1, 1):
            x = sx * (g - 7.2 + 14.4 * u)
            y = ey - 0.6 * u  # outer corner slightly higher
            upper = np.stack([x, y - hu * up_shape], axis=1)
            lower = np.stack([x, y + hl * low_shape], axis=1)
            d.fill(np.vstack([upper, lower[::-1]]), (222.0, 220.0, 214.0))
            d.fill(_ellipse(sx * g, ey - 0.3 + gaze_y, r, r, 16), self.c_iris)
            d.fill(_ellipse(sx * g, ey - 0.3 + gaze_y, 1.3, 1.3, 10), (15.0, 12.0, 12.0))
            # lids re-cover whatever of the iris lies outside the eye opening
            d.fill(np.vstack([upper, (upper - [0, 6])[::-1]]), self.c_skin)
            d.fill(np.vstack([lower, (lower + [0, 5])[::-1]]), self.c_skin)
            d.line(upper, self.tone(0.25), self.thin)
            d.line(upper[2:-2] - [0, 2.4 + 0.6 * e.eye_open], self.tone(0.72), 1)
            d.line(lower, self.tone(0.78), 1)

    def _nose(self, d: _DrawList, e: Expression, fy: float) -> None:
        ny = 10.5 + fy - 1.4 * e.nose_wrinkle - 0.6 * e.upper_lip_raise
        flare = 1 + 0.25 * e.nose_wrinkle
        for sx in (-1, 1):
            d.fill(_ellipse(sx * 3.4 * flare, ny + 0.6, 1.6, 1.0, 10), self.tone(0.35))
            d.line(
                _curve((sx * 2.0, ny - 3.0), (sx * 5.8 * flare, ny - 0.6), (sx * 4.2, ny + 1.6), 7), self.tone(0.72), 1
            )

    def _mouth(self, d: _DrawList, e: Expression, shape: _MouthShape, talk: float) -> float:
        """Draw lips, mouth opening and teeth; return the opening height (it follows the voice)."""
        press = e.lip_press
        ym, mw, yc = shape.y, shape.w, shape.yc
        h = (
            self.id.talk_amp * talk * (1 - 0.8 * press) * (1 - 0.5 * e.jaw_drop)
            + 7.0 * e.jaw_drop
            + 3.2 * e.lip_stretch
            + 1.2 * e.upper_lip_raise
            + 3.0 * e.mouth_round
        )
        p = 1.0 - 0.5 * e.mouth_round
        xn = _MOUTH_X
        x = mw * xn
        q = 1 - xn**2
        sq = np.sqrt(q)
        s = q**p
        y0 = ym + yc * xn**2
        y_ui = y0 - h * 0.3 * s - 2.6 * e.upper_lip_raise * q
        y_li = y0 + h * 0.7 * s
        tu = 2.5 * (1 - 0.75 * press) + 0.6
        tl = 3.1 * (1 - 0.7 * press) + 0.6
        y_uo = y_ui - (tu - _CUPID_BOW) * sq
        y_lo = y_li + tl * sq
        d.fill(np.vstack([np.stack([x, y_uo], 1), np.stack([x, y_lo], 1)[::-1]]), self.c_lips)
        if h > 0.6:
            d.fill(np.vstack([np.stack([x, y_ui], 1), np.stack([x, y_li], 1)[::-1]]), (70.0, 25.0, 30.0))
            teeth = np.minimum(y_ui + np.minimum(h * 0.45, 3.2) * (1 - 0.8 * e.mouth_round) * s + 0.5, y_li)
            i = slice(3, -3)
            d.fill(
                np.vstack([np.stack([x[i], y_ui[i]], 1), np.stack([x[i], teeth[i]], 1)[::-1]]), (226.0, 222.0, 210.0)
            )
        else:
            d.line(np.stack([x, y0], 1), self.c_lipline, 1)
        return h

    def _folds_and_wrinkles(self, d: _DrawList, e: Expression, fy: float, mouth: _MouthShape) -> None:
        fold = min(
            1.0,
            0.12 + 0.9 * e.cheek_raise + 0.7 * e.upper_lip_raise + 0.45 * e.lip_stretch + 0.3 * max(e.mouth_curve, 0),
        )
        mw, ym, yc = mouth.w, mouth.y, mouth.yc
        g = self.id.eye_gap
        for sx in (-1, 1):
            d.line(
                _curve((sx * 6.5, 8.5 + fy), (sx * (mw + 4.5), ym - 4 + yc * 0.5), (sx * (mw + 2.5), ym + yc + 3.5), 7),
                self.tone(1 - 0.3 * fold),
                1,
            )
            if e.cheek_raise > 0.05:  # lower-lid bulge of a genuine smile
                d.line(
                    _curve((sx * (g - 5), -1.5 + fy), (sx * g, 0.5 + fy), (sx * (g + 5), -1.5 + fy), 7),
                    self.tone(1 - 0.3 * e.cheek_raise),
                    1,
                )
        if e.nose_wrinkle > 0.05:
            for yy in (-1.5, 1.0, 3.5):
                d.line(
                    _curve((-3.8, yy + fy), (0, yy + fy - 1.0), (3.8, yy + fy), 5),
                    self.tone(1 - 0.42 * e.nose_wrinkle),
                    1,
                )
        if e.brow_knit > 0.05:
            for sx in (-1, 1):
                d.line(np.array([[sx * 1.6, -18.5 + fy], [sx * 1.2, -12.5 + fy]]), self.tone(1 - 0.35 * e.brow_knit), 1)

    def _shades(self, e: Expression, oval: np.ndarray) -> _DrawList:
        """Soft light regions: sockets and rim darker; nose bridge, cheeks and forehead brighter."""
        fw, fh, fy = self.id.face_w, self.id.face_h, 3.0 * e.head_down
        g = self.id.eye_gap
        # wide eyes and raised brows show bright sclera and lid skin: deepen the socket to keep the eye band dark
        socket = 74.0 - 14.0 * max(e.eye_open, 0.0) - 6.0 * max(e.brow_raise, 0.0)
        d = _DrawList()
        d.fill(oval * [1.04, 1.03], (102.0,))
        d.fill(oval * [0.84, 0.86], (128.0,))
        for sx in (-1, 1):
            d.fill(_ellipse(sx * g, -7.5 + fy, 9.5, 6.5, 14), (socket,))
            d.fill(_ellipse(sx * (g + 2), 8.5 + fy - 4 * e.cheek_raise, 7, 5, 12), (141.0 + 10 * e.cheek_raise,))
        d.fill(_ellipse(0, -3 + fy, 3.2, 8, 12), (156.0,))
        d.fill(_ellipse(-math.copysign(4.5, self.id.light), 4 + fy, 2.0, 6, 10), (105.0,))
        d.fill(_ellipse(0, 13.5 + fy, 5, 1.6, 10), (100.0,))
        d.fill(_ellipse(0, -fh * 0.62 + fy, fw * 0.45, 6, 12), (138.0,))
        return d

    def _shading(self, layers: _Layers, opening: float) -> np.ndarray:
        """The frame's multiplicative light map (uint8, 128 = 1.0), with the shadow under the moving lower lip.

        Drawn and blurred at half resolution: it is smooth, and the blur is
        the most expensive step of a frame.
        """
        half = (self.size + 1) // 2
        m = np.full((half, half), 128, np.uint8)
        layers.shades.draw(m, self.m * 0.5, antialias=False)
        lip = _DrawList()
        lip.fill(_ellipse(0, layers.mouth.y + opening * 0.7 + 6.5, 6, 2.0, 10), (108.0,))
        lip.draw(m, self.m * 0.5, antialias=False)
        m = cv2.GaussianBlur(m, (0, 0), 1.1 * self.s)
        return cv2.resize(m, (self.size, self.size), interpolation=cv2.INTER_LINEAR)


def _col(c) -> tuple[float, float, float]:
    v = np.clip(np.asarray(c, dtype=float), 0, 255)
    return (float(v[0]), float(v[1]), float(v[2]))
