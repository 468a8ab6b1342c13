"""Photo-textured rooms for judging settings away from the rooms they were tuned on
(``nerfloc-make-scene --room photo-a|photo-b|photo-c``).

The example rooms cover every surface with small tiles of texture scans (text, coins, a camera
test picture every 0.6-1.2 m), which gives local features something to hold on to everywhere. A
room people live in looks otherwise: painted walls and a white ceiling with nothing to match on,
photographs at their natural scale (a mural or wallpaper across a wall, framed pictures), a floor
texture, furniture whose sides carry photographs, and one picture hung twice. These rooms are
laid out that way from a seed (size, where pictures hang, furniture along the walls), with
photographs that ship in scikit-image and Matplotlib (nothing is downloaded). Render them with
``--lighting lit`` (shadows, highlights) for the view-dependent look of real captures.

Conventions as in :mod:`nerfloc_plugins.data.synthetic_scene`: z up, metres, the room centred on
the origin in x and y (the default camera loops stay inside it), floor at z = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from nerfloc_plugins.data.synthetic_scene import Box, poster_boxes


@dataclass(frozen=True)
class PhotoRoomStyle:
    """What a photo room is made of; its layout comes from ``seed``."""

    seed: int
    murals: Tuple[str, str]
    """Photographs stretched across most of two facing walls (the x walls)."""
    pictures: Tuple[str, ...]
    """Framed photographs on the plain (y) walls, once each."""
    repeated: str
    """A photograph hung on both plain walls (the repeated texture that fools matching)."""
    floor: str
    floor_tile: float
    furniture: Tuple[str, ...]
    """Texture of each piece of furniture's sides (tiled photographs)."""
    tops: Tuple[str, ...]
    """Photographs lying on the furniture tops (a book, a rug, a tray)."""
    wall_albedo: float = 0.85


PHOTO_ROOM_STYLES: Dict[str, PhotoRoomStyle] = {
    "photo-a": PhotoRoomStyle(
        seed=11, murals=("astronaut", "grace_hopper"), pictures=("rocket", "hubble_deep_field"), repeated="chelsea",
        floor="gravel", floor_tile=0.8, furniture=("moon", "clock", "coins"), tops=("page", "present", "retina"),
    ),
    "photo-b": PhotoRoomStyle(
        seed=12, murals=("motorcycle", "coffee"), pictures=("immunohistochemistry", "astronaut"), repeated="rocket",
        floor="brick", floor_tile=1.4, furniture=("camera", "text", "moon"), tops=("hubble_deep_field", "coins", "present"),
        wall_albedo=0.75,
    ),
    "photo-c": PhotoRoomStyle(
        seed=13, murals=("retina", "rocket"), pictures=("grace_hopper", "coffee", "motorcycle"), repeated="astronaut",
        floor="grass", floor_tile=1.0, furniture=("clock", "coins", "camera", "brick"), tops=("chelsea", "text", "moon", "page"),
        wall_albedo=0.9,
    ),
}  # fmt: skip
"""The photo rooms. Tune on ``photo-a`` and ``photo-b``; keep ``photo-c`` for judging."""


def photo_room(name: str) -> List[Box]:
    """The boxes of photo room ``name`` (:data:`PHOTO_ROOM_STYLES`); deterministic."""
    style = PHOTO_ROOM_STYLES[name]
    rng = np.random.default_rng(style.seed)
    hx, hy, height = rng.uniform(2.1, 2.8), rng.uniform(1.6, 2.1), rng.uniform(2.5, 2.9)
    room = Box((-hx, -hy, 0.0), (hx, hy, height), (None, None, None, None, style.floor, None),
               tile=style.floor_tile, inside=True, albedo=style.wall_albedo)  # fmt: skip
    # murals: most of each x wall, from skirting to near the ceiling (face looking into the room)
    y0, y1 = -hy + rng.uniform(0.2, 0.6), hy - rng.uniform(0.2, 0.6)
    z0, z1 = rng.uniform(0.2, 0.5), height - rng.uniform(0.2, 0.4)
    walls = [((hx - 0.01, y0, z0), (hx, y1, z1), style.murals[0], 0),
             ((-hx, y0, z0), (-hx + 0.01, y1, z1), style.murals[1], 1)]  # fmt: skip
    # framed pictures along the y walls; the repeated one once on each, at mirrored places
    hung = [(p, side) for i, p in enumerate(style.pictures) for side in [(-1, 1)[i % 2]]]
    hung += [(style.repeated, -1), (style.repeated, 1)]
    per_wall = {side: [p for p, s in hung if s == side] for side in (-1, 1)}
    for side, pictures in per_wall.items():
        slots = np.linspace(-hx + 0.5, hx - 0.5, len(pictures) + 1)
        for (a, b), picture in zip(zip(slots[:-1], slots[1:]), pictures):
            width = min(b - a - 0.2, rng.uniform(0.9, 1.4))
            centre = (a + b) / 2 + rng.uniform(-0.1, 0.1)
            bottom = rng.uniform(0.9, 1.1)
            top = bottom + width * rng.uniform(0.65, 0.85)
            y_in = side * hy - side * 0.02
            lo, hi = (centre - width / 2, min(side * hy, y_in), bottom), (centre + width / 2, max(side * hy, y_in), top)
            walls.append((lo, hi, picture, 2 if side > 0 else 3))
    boxes = [room] + poster_boxes(walls, readable=True)
    # furniture below the pictures, along the y walls, away from the camera loops (|x| > 1.1 m)
    for i, (side_tex, top_tex) in enumerate(zip(style.furniture, style.tops)):
        side = (-1, 1)[i % 2]
        xs = (-1, 1)[(i // 2) % 2] * rng.uniform(1.2, hx - 0.6)
        w, d, h = rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.6), rng.uniform(0.45, 0.85)
        y_wall = side * (hy - 0.05)
        lo = (xs - w / 2, min(y_wall, y_wall - side * d), 0.0)
        hi = (xs + w / 2, max(y_wall, y_wall - side * d), h)
        boxes.append(Box(lo, hi, (side_tex,) * 4 + (None, top_tex), tile=rng.uniform(0.4, 0.7),
                         decal=(False,) * 5 + (True,)))  # fmt: skip
    return boxes
