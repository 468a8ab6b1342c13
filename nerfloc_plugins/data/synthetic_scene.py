"""A small indoor scene rendered exactly by ray casting, written in 7-Scenes layout.

The scene is a closed room (z up, metres) with textured walls, floor and ceiling, wall
posters and a few textured boxes.  Textures are real photographs and scans shipped with
scikit-image.  Shading (:class:`Lighting`) is by default Lambertian under a fixed light and a
soft ceiling-lamp falloff, so appearance is view-independent; ``lighting="lit"`` adds a point
lamp with hard shadows and view-dependent highlights on glossy surfaces.  Depth is exact
(z-depth, as 7-Scenes stores it).

Cameras follow hand-held-like loops: two training sequences and one query sequence whose
viewpoints sit between and beside the training loops (different height, radius and
heading), so queries are not close copies of training views.

Everything is deterministic given the seed; the example scene in ``examples/demo_room``
is produced by ``nerfloc-make-scene --output-dir examples/demo_room``.  Other scenes for judging
settings: ``--room office`` (another room), ``--room gallery`` (repeated pictures, a nearly
symmetric layout), ``--room photo-a|b|c`` (photographs at their natural scale on painted
walls: :mod:`nerfloc_plugins.data.photo_rooms`), ``--hard-queries N`` (``seq-04``: queries whose nearby mapping views look
elsewhere) and ``--repeated-queries N`` (queries facing a picture hung twice), both listed in
``hard_queries.txt``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame

# face index -> (normal axis, sign); faces of a box: -x, +x, -y, +y, -z, +z
_FACES = [(0, -1), (0, 1), (1, -1), (1, 1), (2, -1), (2, 1)]
_LIGHT_DIR = np.array([0.35, -0.5, 0.79]) / np.linalg.norm([0.35, -0.5, 0.79])
_LAMP = np.array([0.3, -0.2, 2.6])


MATPLOTLIB_PICTURES = {"grace_hopper": "grace_hopper.jpg", "present": "Minduka_Present_Blue_Pack.png"}
"""Pictures read from Matplotlib's sample data (installed with it) rather than scikit-image's."""


def _sample_picture(name: str) -> np.ndarray:
    """The picture ``name``: a scikit-image sample, one of :data:`MATPLOTLIB_PICTURES`, or
    ``motorcycle`` (the left view of scikit-image's stereo pair)."""
    import skimage.data

    if name in MATPLOTLIB_PICTURES:
        import matplotlib.cbook

        return np.asarray(Image.open(matplotlib.cbook.get_sample_data(MATPLOTLIB_PICTURES[name], asfileobj=False)))
    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


@lru_cache(maxsize=None)
def texture(name: str) -> np.ndarray:
    """A sample picture (:func:`_sample_picture`) as float RGB in [0, 1] (grey pictures are tinted)."""

    tints = {
        "brick": (0.85, 0.55, 0.45),
        "gravel": (0.75, 0.72, 0.65),
        "grass": (0.55, 0.75, 0.45),
        "camera": (0.9, 0.9, 0.95),
        "coins": (0.95, 0.85, 0.6),
        "page": (1.0, 0.97, 0.9),
        "text": (0.9, 0.95, 1.0),
        "moon": (0.8, 0.8, 0.9),
    }
    img = _sample_picture(name).astype(np.float32)
    img /= 255.0 if img.max() > 1.0 else 1.0
    if img.ndim == 2:
        img = img[..., None] * np.asarray(tints.get(name, (1.0, 1.0, 1.0)), dtype=np.float32)
    return np.ascontiguousarray(img[..., :3])


@dataclass(frozen=True)
class Box:
    """Axis-aligned box; ``textures`` per face (-x,+x,-y,+y,-z,+z), ``None`` = flat colour.

    ``tile`` is the texture repeat size in metres; ``decal`` faces stretch the picture once
    over the face instead of tiling it.  ``inside`` boxes are seen from within (the room).
    """

    lo: Tuple[float, float, float]
    hi: Tuple[float, float, float]
    textures: Tuple[Optional[str], ...]
    tile: float = 1.0
    decal: Tuple[bool, ...] = (False,) * 6
    inside: bool = False
    albedo: float = 1.0
    readable: bool = False
    """Decals read left to right from the side they face (the demo and office rooms predate it:
    their pictures on -x and +y faces are mirrored, and stay so to keep those scenes as they are)."""


def poster_boxes(posters: Sequence[Tuple[tuple, tuple, str, int]], readable: bool = False) -> List[Box]:
    """Thin boxes showing a picture once on one face: ``(lo, hi, picture, face looking into the room)``."""
    boxes = []
    for lo, hi, picture, face in posters:
        textures: List[Optional[str]] = [None] * 6
        textures[face] = picture
        boxes.append(Box(lo, hi, tuple(textures), decal=(True,) * 6, readable=readable))
    return boxes


def demo_room() -> List[Box]:
    """The example room: 4.0 x 3.2 x 2.5 m with furniture and posters."""
    room = Box(
        lo=(-2.0, -1.6, 0.0),
        hi=(2.0, 1.6, 2.5),
        textures=("brick", "gravel", "grass", "brick", "gravel", "page"),
        tile=1.2,
        inside=True,
    )
    # (lo, hi, picture, face looking into the room)
    posters = [
        ((1.97, -0.9, 0.8), (2.0, 0.5, 1.9), "astronaut", 0),
        ((-0.2, 1.57, 0.7), (1.3, 1.6, 1.8), "coffee", 2),
        ((-1.2, -1.6, 0.9), (0.3, -1.57, 1.9), "chelsea", 3),
        ((-2.0, -0.4, 0.6), (-1.97, 1.1, 1.7), "rocket", 1),
    ]
    boxes = [room] + poster_boxes(posters)
    boxes += [
        Box(
            (0.6, 0.4, 0.0),
            (1.4, 1.1, 0.75),
            ("coins", "coins", "coins", "coins", None, "hubble_deep_field"),
            tile=0.5,
            decal=(False, False, False, False, False, True),
        ),
        Box((-1.8, -1.4, 0.0), (-1.2, -0.8, 1.5), ("camera", "text", "camera", "text", None, "moon"), tile=0.6),
        Box((0.3, -1.2, 0.0), (0.75, -0.75, 0.45), ("ihc",) * 6, tile=0.45, decal=(True,) * 6),
        Box(
            (-0.9, 0.6, 0.0),
            (-0.5, 1.0, 0.9),
            ("retina", "coffee", "immunohistochemistry", "retina", None, "coins"),
            tile=0.4,
            decal=(True,) * 6,
        ),
    ]
    return boxes


def office_room() -> List[Box]:
    """A second room for judging settings not tuned on the example room: 5.0 x 3.6 x 2.7 m, other
    wall / floor textures, posters and furniture (desk, shelf, cabinet, crate) along the walls."""
    room = Box(
        lo=(-2.5, -1.8, 0.0),
        hi=(2.5, 1.8, 2.7),
        textures=("text", "grass", "gravel", "camera", "coins", "page"),
        tile=0.9,
        inside=True,
    )
    posters = [
        ((2.47, -1.2, 0.9), (2.5, 0.2, 2.0), "cat", 0),
        ((-0.8, 1.77, 1.0), (0.6, 1.8, 2.1), "colorwheel", 2),
        ((0.4, -1.8, 0.8), (1.9, -1.77, 1.9), "astronaut", 3),
        ((-2.5, -1.0, 0.9), (-2.47, 0.6, 2.0), "clock", 1),
    ]
    boxes = [room] + poster_boxes(posters)
    boxes += [
        Box((1.3, 0.6, 0.0), (2.3, 1.4, 0.75), ("brick", "brick", "brick", "brick", None, "retina"), tile=0.5,
            decal=(False, False, False, False, False, True)),  # desk
        Box((-2.4, 0.9, 0.0), (-1.9, 1.7, 1.9), ("hubble_deep_field", "rocket", "coffee", "coffee", None, "moon"),
            tile=0.6, decal=(True,) * 6),  # shelf
        Box((-1.9, -1.7, 0.0), (-1.1, -1.2, 1.1), ("ihc", "chelsea", "ihc", "ihc", None, "brick"), tile=0.5,
            decal=(True,) * 6),  # cabinet
        Box((0.9, -1.5, 0.0), (1.4, -1.0, 0.5), ("coins",) * 6, tile=0.3),  # crate
    ]  # fmt: skip
    return boxes


def gallery_room() -> List[Box]:
    """A room that fools feature matching: 5.0 x 3.6 x 2.7 m, the same two pictures hung twice
    (``astronaut`` on the east and west walls, ``coffee`` on the north and south walls) and two
    identical crates in mirrored corners: nearly symmetric under a half turn.  What tells the
    copies apart is plain and low-textured, what local features barely see: the first copies hang
    on brick walls, the second on plain painted ones; a dark bench stands below the east
    astronaut, a grey cabinet beside the south coffee, a grey column in the north-west corner,
    and one picture (``chelsea``) hangs once.  Its mapping frames include a
    close-up pass at the first copy of each picture only (:func:`first_copy_closeups`), so a query
    close to the second copy (:func:`repeated_picture_query_poses`) finds its best descriptor
    matches at the first: whole-image retrieval and 2D-3D matching pick the wrong copy."""
    room = Box(
        lo=(-2.5, -1.8, 0.0),
        hi=(2.5, 1.8, 2.7),
        textures=(None, "brick", None, "brick", "gravel", "page"),
        tile=0.9,
        inside=True,
    )
    posters = [
        ((2.47, -0.8, 0.8), (2.5, 0.8, 2.0), "astronaut", 0),
        ((-2.5, -0.8, 0.8), (-2.47, 0.8, 2.0), "astronaut", 1),
        ((-0.7, 1.77, 0.9), (0.7, 1.8, 2.0), "coffee", 2),
        ((-0.7, -1.8, 0.9), (0.7, -1.77, 2.0), "coffee", 3),
        ((1.3, 1.77, 1.0), (2.1, 1.8, 1.7), "chelsea", 2),
    ]
    boxes = [room] + poster_boxes(posters, readable=True)
    plain = (None,) * 6
    boxes += [
        Box((1.9, 1.1, 0.0), (2.4, 1.6, 0.6), ("coins",) * 6, tile=0.3),  # crate
        Box((-2.4, -1.6, 0.0), (-1.9, -1.1, 0.6), ("coins",) * 6, tile=0.3),  # its twin, mirrored corner
        Box((2.05, -0.9, 0.0), (2.45, 0.9, 0.75), plain, albedo=0.3),  # dark bench below the east astronaut
        Box((0.85, -1.75, 0.0), (1.45, -1.3, 1.4), plain, albedo=0.6),  # grey cabinet beside the south coffee
        Box((-2.45, 1.3, 0.0), (-2.1, 1.75, 2.7), plain, albedo=0.7),  # column in the north-west corner
    ]
    return boxes


def repeated_pictures(boxes: Sequence[Box]) -> List[List[Box]]:
    """The copies of every picture hung more than once (decal boxes with one picture), grouped
    per picture in the room's order."""
    decals = [b for b in boxes if not b.inside and any(b.decal) and sum(t is not None for t in b.textures) == 1]
    groups: Dict[str, List[Box]] = {}
    for box in decals:
        groups.setdefault(next(t for t in box.textures if t is not None), []).append(box)
    return [copies for copies in groups.values() if len(copies) > 1]


def facing_picture_pose(box: Box, rng: np.random.Generator, distance: Tuple[float, float]) -> np.ndarray:
    """A camera ``distance`` metres in front of a picture (1.1-1.6 m high, up to 0.5 m aside)
    aimed at its lower half (+-0.25 m), so the picture and what stands below it fill the view."""
    face = next(f for f, t in enumerate(box.textures) if t is not None)
    axis, sign = _FACES[face]
    centre = (np.asarray(box.lo) + np.asarray(box.hi)) / 2
    eye = centre.copy()
    eye[axis] += sign * rng.uniform(*distance)
    eye[1 - axis if axis < 2 else 0] += rng.uniform(-0.5, 0.5)
    eye[2] = rng.uniform(1.1, 1.6)
    target = centre + np.array([*rng.uniform(-0.25, 0.25, 2), rng.uniform(-0.45, -0.15)])
    return look_at_c2w(eye, target, roll=rng.normal(scale=0.03))


def first_copy_closeups(boxes: Sequence[Box], num: int, seed: int = 6) -> List[np.ndarray]:
    """Mapping poses 0.9-1.5 m in front of the first copy of each repeated picture (in turn)."""
    rng = np.random.default_rng(seed)
    firsts = [copies[0] for copies in repeated_pictures(boxes)]
    return [facing_picture_pose(firsts[i % len(firsts)], rng, (0.9, 1.5)) for i in range(num)] if firsts else []


def _photo_room(name: str) -> Callable[[], List[Box]]:
    def build() -> List[Box]:
        from nerfloc_plugins.data.photo_rooms import photo_room  # builds on this module's boxes

        return photo_room(name)

    return build


PHOTO_ROOMS = ("photo-a", "photo-b", "photo-c")
"""Photo-textured rooms (:mod:`nerfloc_plugins.data.photo_rooms`): tune on a and b, judge on c."""

ROOMS: Dict[str, Callable[[], List[Box]]] = {
    "demo": demo_room,
    "office": office_room,
    "gallery": gallery_room,
    **{name: _photo_room(name) for name in PHOTO_ROOMS},
}
"""Rooms the generator can render (``nerfloc-make-scene --room``)."""


def _picture(name: str) -> np.ndarray:
    aliases = {"ihc": "immunohistochemistry"}
    return texture(aliases.get(name, name))


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup with wrap-around; ``u`` right, ``v`` down, in texture periods."""
    h, w = tex.shape[:2]
    x = (u % 1.0) * w - 0.5
    y = (v % 1.0) * h - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, x1 = x0 % w, (x0 + 1) % w
    y0, y1 = y0 % h, (y0 + 1) % h
    top = tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx
    bottom = tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


@dataclass(frozen=True)
class Lighting:
    """How surfaces are shaded.

    ``flat`` (the example room): Lambertian under a fixed direction plus a soft ceiling-lamp
    falloff, no shadows, view-independent.  ``lit``: a point lamp under the ceiling lights the
    room with the inverse-square-like falloff and **casts hard shadows** (a shadow ray per hit),
    and **glossy** surfaces (every upward face: the floor and the furniture tops, and the posters'
    pictures, as if behind glass) add a Blinn-Phong highlight that moves with the viewpoint, so
    appearance is view-dependent as in real rooms.
    """

    shadows: bool = False
    gloss: float = 0.0
    """Strength of the specular highlight on glossy faces (0: none)."""
    shininess: float = 60.0
    lamp: Tuple[float, float, float] = (0.3, -0.2, 2.3)
    """Position of the point lamp (metres; below both rooms' ceilings)."""


LIGHTINGS: Dict[str, Lighting] = {"flat": Lighting(), "lit": Lighting(shadows=True, gloss=0.45)}
"""Lightings the generator can render (``nerfloc-make-scene --lighting``)."""


def nearest_hits(
    boxes: Sequence[Box], origins: np.ndarray, dirs: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hit parameter ``t`` along ``dirs`` (``inf`` = none), box index and face index of the nearest
    surface of each ray ``(N,)``."""
    n = origins.shape[0]
    best_t = np.full(n, np.inf)
    best_box = np.full(n, -1)
    best_face = np.full(n, -1)
    safe = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
    for b_idx, box in enumerate(boxes):
        lo, hi = np.asarray(box.lo), np.asarray(box.hi)
        t0 = (lo - origins) / safe
        t1 = (hi - origins) / safe
        t_near = np.minimum(t0, t1)
        t_far = np.maximum(t0, t1)
        if box.inside:
            t_hit = t_far.min(axis=1)
            axis = t_far.argmin(axis=1)
            hit = t_hit > 1e-6
        else:
            t_hit = t_near.max(axis=1)
            axis = t_near.argmax(axis=1)
            hit = (t_hit <= t_far.min(axis=1)) & (t_hit > 1e-6)
        sign = np.where(np.take_along_axis(dirs, axis[:, None], 1)[:, 0] > 0, 1, -1)
        face = axis * 2 + np.where(box.inside, (sign > 0), (sign < 0)).astype(int)
        closer = hit & (t_hit < best_t)
        best_t[closer] = t_hit[closer]
        best_box[closer] = b_idx
        best_face[closer] = face[closer]
    return best_t, best_box, best_face


def ray_cast(
    boxes: Sequence[Box], origins: np.ndarray, dirs: np.ndarray, lighting: Lighting = LIGHTINGS["flat"]
) -> Tuple[np.ndarray, np.ndarray]:
    """Colour ``(N, 3)`` and hit distance along ``dirs`` ``(N,)`` of the nearest surface."""
    best_t, best_box, best_face = nearest_hits(boxes, origins, dirs)
    n = origins.shape[0]
    points = origins + dirs * best_t[:, None]
    colour = np.zeros((n, 3))
    lamp_pos = np.asarray(lighting.lamp)
    for b_idx, box in enumerate(boxes):
        for f_idx, (axis, sgn) in enumerate(_FACES):
            mask = (best_box == b_idx) & (best_face == f_idx)
            if not mask.any():
                continue
            p = points[mask]
            u_axis, v_axis = [a for a in range(3) if a != axis]
            lo, hi = np.asarray(box.lo), np.asarray(box.hi)
            name = box.textures[f_idx]
            if name is None:
                rgb = np.full((p.shape[0], 3), 0.8)
            else:
                tex = _picture(name)
                if box.decal[f_idx]:
                    u = (p[:, u_axis] - lo[u_axis]) / (hi[u_axis] - lo[u_axis])
                    v = (p[:, v_axis] - lo[v_axis]) / (hi[v_axis] - lo[v_axis])
                    if box.readable and f_idx in (0, 3):  # seen from outside: right is -u there
                        u = 1.0 - u
                    u = np.clip(u, 0.0, 0.999)
                    v = 1.0 - np.clip(v, 0.001, 1.0) if v_axis == 2 else np.clip(v, 0.0, 0.999)
                else:
                    u = p[:, u_axis] / box.tile
                    v = -p[:, v_axis] / box.tile
                rgb = _sample(tex, u, v)
            normal = np.zeros(3)
            normal[axis] = sgn * (-1 if box.inside else 1)
            if lighting == LIGHTINGS["flat"]:
                lambert = 0.55 + 0.45 * max(float(normal @ _LIGHT_DIR), 0.0)
                lamp = 1.0 / (1.0 + 0.08 * np.sum((p - _LAMP) ** 2, axis=1))
                colour[mask] = rgb * box.albedo * (lambert * (0.75 + 0.75 * lamp))[:, None]
                continue
            to_lamp = lamp_pos - p
            dist2 = np.sum(to_lamp**2, axis=1)
            light = to_lamp / np.sqrt(dist2)[:, None]
            visible = np.ones(p.shape[0])
            if lighting.shadows:  # shadow rays: anything between the point and the lamp
                t_block, _, _ = nearest_hits(boxes, p + 1e-4 * normal, to_lamp)
                visible = (t_block >= 1.0 - 1e-4).astype(float)
            falloff = 1.0 / (1.0 + 0.15 * dist2)
            diffuse = np.clip(light @ normal, 0.0, None) * falloff * visible
            colour[mask] = rgb * box.albedo * (0.3 + 1.6 * diffuse)[:, None]
            glossy = (axis == 2 and normal[2] > 0) or box.decal[f_idx] and name is not None
            if lighting.gloss > 0 and glossy:
                view = -dirs[mask] / np.linalg.norm(dirs[mask], axis=1, keepdims=True)
                half = light + view
                half /= np.linalg.norm(half, axis=1, keepdims=True)
                highlight = np.clip(half @ normal, 0.0, None) ** lighting.shininess
                colour[mask] += (lighting.gloss * highlight * visible * (0.4 + 2.0 * falloff))[:, None]
    return np.clip(colour, 0.0, 1.0), best_t


def look_at_c2w(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """OpenCV-axes c2w (x right, y down, z forward) looking from ``eye`` at ``target``, z-up world."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return c2w


def render_view(
    boxes: Sequence[Box],
    c2w: np.ndarray,
    intrinsics: Intrinsics,
    supersample: int = 2,
    lighting: Lighting = LIGHTINGS["flat"],
) -> Tuple[np.ndarray, np.ndarray]:
    """RGB ``(H, W, 3)`` in [0, 1] and z-depth ``(H, W)`` in metres for an OpenCV c2w pose."""
    w, h, s = intrinsics.width, intrinsics.height, supersample
    offsets = (np.arange(s) + 0.5) / s
    xs = (np.arange(w)[:, None] + offsets[None]).reshape(-1)
    ys = (np.arange(h)[:, None] + offsets[None]).reshape(-1)
    px, py = np.meshgrid(xs, ys)

    def rays(px: np.ndarray, py: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        # directions with camera-frame z = 1, so the hit distance is the z-depth
        cam = np.stack(
            [(px - intrinsics.cx) / intrinsics.fx, (py - intrinsics.cy) / intrinsics.fy, np.ones_like(px)], -1
        )
        dirs = cam.reshape(-1, 3) @ c2w[:3, :3].T
        return np.broadcast_to(c2w[:3, 3], dirs.shape), dirs

    colour, _ = ray_cast(boxes, *rays(px, py), lighting)
    rgb = colour.reshape(h, s, w, s, 3).mean(axis=(1, 3))
    cx, cy = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    depth, _, _ = nearest_hits(boxes, *rays(cx, cy))
    return rgb, depth.reshape(h, w)


def loop_trajectory(
    num: int,
    radius: float,
    height: float,
    phase: float,
    heading_offset: float,
    seed: int,
    wobble: float = 0.06,
) -> List[np.ndarray]:
    """Hand-held-like loop around the room centre, looking outwards towards the walls."""
    rng = np.random.default_rng(seed)
    poses = []
    for i in range(num):
        a = phase + 2 * np.pi * i / num
        r = radius * (1.0 + 0.15 * np.sin(3 * a + seed))
        eye = np.array([r * np.cos(a), 0.8 * r * np.sin(a), height + 0.08 * np.sin(2 * a + seed)])
        heading = a + heading_offset + 0.25 * np.sin(2 * a + 0.5 * seed)
        target = eye + np.array([np.cos(heading), np.sin(heading), -0.25 + 0.1 * np.cos(a * 3)])
        target += rng.normal(scale=wobble, size=3)
        poses.append(look_at_c2w(eye, target, roll=rng.normal(scale=0.03)))
    return poses


def hard_query_poses(
    boxes: Sequence[Box],
    map_c2ws: Sequence[np.ndarray],
    num: int,
    seed: int = 4,
    min_distance: float = 0.5,
    min_angle_deg: float = 90.0,
) -> List[np.ndarray]:
    """Query poses with **no mapping view within ``min_distance`` metres looking within
    ``min_angle_deg`` of them** (the queries where nearby mapping views look elsewhere).

    Eyes are drawn inside the room (0.6 m from the walls, 1.0-1.6 m high, outside furniture),
    headings uniformly; a view is kept when it looks at least 0.8 m far along its centre and has
    most of a 5x5 grid of rays beyond 0.5 m (no face-to-the-wall views)."""
    rng = np.random.default_rng(seed)
    room = next(b for b in boxes if b.inside)
    lo, hi = np.asarray(room.lo) + 0.6, np.asarray(room.hi) - 0.6
    centres = np.array([c[:3, 3] for c in map_c2ws])
    axes = np.array([c[:3, 2] for c in map_c2ws])
    furniture = [b for b in boxes if not b.inside and (np.asarray(b.hi) - np.asarray(b.lo)).min() > 0.05]
    intr = Intrinsics(525.0, 525.0, 320.0, 240.0, 640, 480).scaled_to(160, 120)
    grid_x, grid_y = np.meshgrid(np.linspace(10, 150, 5), np.linspace(10, 110, 5))
    poses: List[np.ndarray] = []
    for _ in range(200 * max(num, 1)):
        if len(poses) == num:
            break
        eye = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]), rng.uniform(1.0, 1.6)])
        if any(np.all(eye > np.asarray(b.lo) - 0.3) and np.all(eye < np.asarray(b.hi) + 0.3) for b in furniture):
            continue
        heading = rng.uniform(0, 2 * np.pi)
        target = eye + np.array([np.cos(heading), np.sin(heading), rng.uniform(-0.35, -0.1)])
        c2w = look_at_c2w(eye, target, roll=rng.normal(scale=0.03))
        near = np.linalg.norm(centres - eye, axis=1) < min_distance
        looks_alike = axes @ c2w[:3, 2] > np.cos(np.radians(min_angle_deg))
        if np.any(near & looks_alike):
            continue
        cam = np.stack([(grid_x - intr.cx) / intr.fx, (grid_y - intr.cy) / intr.fy, np.ones_like(grid_x)], -1)
        dirs = cam.reshape(-1, 3) @ c2w[:3, :3].T
        depth, _, _ = nearest_hits(boxes, np.broadcast_to(eye, dirs.shape), dirs)
        if depth[12] < 0.8 or np.mean(depth > 0.5) < 0.8:
            continue
        poses.append(c2w)
    if len(poses) < num:
        raise ValueError(f"found only {len(poses)} of {num} hard query poses (fewer mapping views or queries)")
    return poses


def repeated_picture_query_poses(boxes: Sequence[Box], num: int, seed: int = 5) -> List[np.ndarray]:
    """Query poses 0.9-1.5 m in front of a later copy of a repeated picture (each in turn), the
    copies the map saw only from afar (:func:`facing_picture_pose`): the case where feature
    matching picks the other copy."""
    rng = np.random.default_rng(seed)
    later = [box for copies in repeated_pictures(boxes) for box in copies[1:]]
    if not later and num:
        raise ValueError("this room hangs no picture twice: no repeated-picture queries (use --room gallery)")
    return [facing_picture_pose(later[i % len(later)], rng, (0.9, 1.5)) for i in range(num)]


def default_sequences(frames_per_train_seq: int, frames_test: int) -> Dict[int, Tuple[str, List[np.ndarray]]]:
    """Sequence number -> (split, poses) of the example scene."""
    return {
        1: ("train", loop_trajectory(frames_per_train_seq, 0.75, 1.45, 0.0, 0.0, seed=1)),
        2: ("train", loop_trajectory(frames_per_train_seq, 0.35, 1.15, 0.2, 0.35, seed=2)),
        3: ("test", loop_trajectory(frames_test, 0.55, 1.30, 0.13, 0.18, seed=3)),
    }


def wandering_room_cameras(
    n: int, intrinsics: Intrinsics, seed: int = 0, step_m: float = 0.05, turns: float = 3.0, grid_step_px: int = 8
) -> Tuple[List[PosedFrame], List[np.ndarray]]:
    """``n`` cameras wandering inside an empty 6 x 6 x 3 m box (centred at the origin), turning ``turns``
    times round it, and for each the wall points (world, metres) seen through a grid of pixels every
    ``grid_step_px``: scenes of any size without rendering, for costs that grow with the scene.

    Centres: a random walk (``step_m`` per frame, folded into +-2 m by a sine); camera-to-world poses
    with OpenCV axes (x right, y down, z forward), level, looking horizontally."""
    rng = np.random.default_rng(seed)
    w, h = intrinsics.width, intrinsics.height
    uu, vv = np.meshgrid(
        np.arange(grid_step_px / 2, w, grid_step_px) + 0.5, np.arange(grid_step_px / 2, h, grid_step_px) + 0.5
    )
    rays = np.stack([(uu - intrinsics.cx) / intrinsics.fx, (vv - intrinsics.cy) / intrinsics.fy, np.ones_like(uu)], -1)
    rays = rays.reshape(-1, 3)
    lo, hi = np.array([-3.0, -3.0, -1.5]), np.array([3.0, 3.0, 1.5])
    walk = np.cumsum(rng.normal(0, step_m, (n, 2)), axis=0)
    frames, points = [], []
    for i in range(n):
        yaw = 2 * np.pi * turns * i / n + rng.normal(0, 0.05)
        centre = np.array([2.0 * np.sin(walk[i, 0]), 2.0 * np.sin(walk[i, 1]), 0.2 * np.sin(0.05 * i)])
        forward, down = np.array([np.cos(yaw), np.sin(yaw), 0.0]), np.array([0.0, 0.0, -1.0])
        c2w = np.eye(4)
        c2w[:3, :3] = np.stack([np.cross(down, forward), down, forward], axis=1)
        c2w[:3, 3] = centre
        d = rays @ c2w[:3, :3].T
        with np.errstate(divide="ignore"):
            exit_t = np.maximum((lo - centre) / d, (hi - centre) / d).min(axis=1)
        points.append(centre + d * exit_t[:, None])
        frames.append(PosedFrame(name=f"f{i}", image_path=Path(f"f{i}.png"), c2w=c2w, intrinsics=intrinsics))
    return frames, points


def _write_frame(job) -> None:
    """Render one view and write its ``.color.png`` / ``.depth.png`` (millimetres, 65535 = no
    surface) / ``.pose.txt`` (camera-to-world, OpenCV axes)."""
    boxes, c2w, intrinsics, supersample, lighting, stem = job
    rgb, depth = render_view(boxes, c2w, intrinsics, supersample, LIGHTINGS[lighting])
    Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(f"{stem}.color.png", optimize=True)
    depth_mm = np.where(np.isfinite(depth), np.round(depth * 1000.0), 65535).clip(0, 65535)
    Image.fromarray(depth_mm.astype(np.uint16)).save(f"{stem}.depth.png", optimize=True)
    np.savetxt(f"{stem}.pose.txt", c2w, fmt="%.8f")


def write_sevenscenes_scene(
    output_dir: Path,
    width: int = 160,
    height: int = 120,
    frames_per_train_seq: int = 50,
    frames_test: int = 20,
    supersample: int = 2,
    progress: Optional[Callable[[int, int], None]] = None,
    room: str = "demo",
    hard_queries: int = 0,
    lighting: str = "flat",
    repeated_queries: int = 0,
    workers: int = 1,
) -> Dict[str, int]:
    """Render ``room`` (:data:`ROOMS`) into ``output_dir`` (7-Scenes layout); returns frame counts.

    Intrinsics are the 7-Scenes defaults (f = 525 px at 640x480) scaled to ``width`` x
    ``height``, so ``sevenscenes-data`` reads the scene with its default options.  Queries:
    ``seq-03`` (between and beside the mapping loops) and, with ``hard_queries``, ``seq-04``:
    views with no mapping view near them looking their way (:func:`hard_query_poses`), listed
    in ``hard_queries.txt`` (one image name per line) so reports can show them apart.
    ``lighting``: :data:`LIGHTINGS` (``lit``: shadows and view-dependent highlights).
    ``repeated_queries``: also queries facing a picture the room hangs twice
    (:func:`repeated_picture_query_poses`), appended to ``seq-04`` and listed as hard queries.
    ``workers``: frames rendered at once (threads; the ray casting and PNG coding are NumPy / zlib
    work that releases the GIL). The files are the same for any number.
    """
    if room not in ROOMS:
        raise ValueError(f"room {room!r}: expected one of {sorted(ROOMS)}")
    if lighting not in LIGHTINGS:
        raise ValueError(f"lighting {lighting!r}: expected one of {sorted(LIGHTINGS)}")
    intrinsics = Intrinsics(525.0, 525.0, 320.0, 240.0, 640, 480).scaled_to(width, height)
    boxes = ROOMS[room]()
    sequences = default_sequences(frames_per_train_seq, frames_test)
    if hard_queries:
        mapping = [c2w for split, poses in sequences.values() if split == "train" for c2w in poses]
        sequences[4] = ("test", hard_query_poses(boxes, mapping, hard_queries))
    closeups = first_copy_closeups(boxes, 24) if room == "gallery" else []
    if closeups:
        sequences[5] = ("train", closeups)
    if repeated_queries:
        earlier = sequences.get(4, ("test", []))[1]
        sequences[4] = ("test", earlier + repeated_picture_query_poses(boxes, repeated_queries))
    output_dir.mkdir(parents=True, exist_ok=True)
    splits: Dict[str, List[str]] = {"train": [], "test": []}
    jobs = []
    for seq, (split, poses) in sequences.items():
        splits[split].append(f"sequence{seq}")
        seq_dir = output_dir / f"seq-{seq:02d}"
        seq_dir.mkdir(exist_ok=True)
        jobs += [
            (boxes, c2w, intrinsics, supersample, lighting, seq_dir / f"frame-{i:06d}") for i, c2w in enumerate(poses)
        ]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for done, _ in enumerate(pool.map(_write_frame, jobs), start=1):
            if progress is not None:
                progress(done, len(jobs))
    if 4 in sequences:
        names = [f"seq-04/frame-{i:06d}.color.png" for i in range(len(sequences[4][1]))]
        (output_dir / "hard_queries.txt").write_text("\n".join(names) + "\n")
    (output_dir / "TrainSplit.txt").write_text("\n".join(splits["train"]) + "\n")
    (output_dir / "TestSplit.txt").write_text("\n".join(splits["test"]) + "\n")
    return {split: sum(len(sequences[int(s[len("sequence") :])][1]) for s in names) for split, names in splits.items()}
