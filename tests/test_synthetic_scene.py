"""The ray-cast example scene: exact depth, and the shipped scene is what the generator makes."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerfloc_plugins.data.frames import Intrinsics, load_depth_meters
from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
from nerfloc_plugins.data.synthetic_scene import default_sequences, demo_room, look_at_c2w, render_view

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo_room"


def test_depth_is_exact_z_depth_of_a_fronto_parallel_wall():
    intr = Intrinsics(40.0, 40.0, 32.0, 24.0, 64, 48)
    eye = np.array([-0.9, 0.0, 1.2])
    c2w = look_at_c2w(eye, eye + np.array([0.0, 1.0, 0.0]))  # faces the +y wall (y = 1.6), no poster there
    rgb, depth = render_view(demo_room(), c2w, intr, supersample=1)
    assert rgb.shape == (48, 64, 3) and 0.0 <= rgb.min() and rgb.max() <= 1.0
    assert rgb.std() > 0.02  # textured, not flat
    np.testing.assert_allclose(depth[5:30, 12:34], 1.6, atol=1e-9)


def test_camera_axes_are_opencv():
    c2w = look_at_c2w(np.zeros(3), np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(c2w[:3, 2], [1, 0, 0], atol=1e-12)  # z forward
    np.testing.assert_allclose(c2w[:3, 1], [0, 0, -1], atol=1e-12)  # y down (world z is up)
    np.testing.assert_allclose(np.linalg.det(c2w[:3, :3]), 1.0)


def test_query_views_are_not_copies_of_training_views():
    seqs = default_sequences(50, 20)
    train = np.stack([p for split, poses in seqs.values() if split == "train" for p in poses])
    test = np.stack(seqs[3][1])
    dist = np.linalg.norm(test[:, None, :3, 3] - train[None, :, :3, 3], axis=-1)
    nearest = dist.min(axis=1)
    assert np.median(nearest) > 0.08  # metres from the closest training camera


@pytest.mark.skipif(not EXAMPLE.exists(), reason="example scene not in this checkout")
def test_shipped_example_scene_is_reproduced_by_the_generator():
    outputs = SevenScenesDataParserConfig(data=EXAMPLE).setup().get_dataparser_outputs("test")
    assert len(outputs.image_filenames) == 20
    c2w = np.loadtxt(EXAMPLE / "seq-03" / "frame-000005.pose.txt")
    np.testing.assert_allclose(c2w, default_sequences(50, 20)[3][1][5], atol=1e-7)
    intr = Intrinsics(525.0, 525.0, 320.0, 240.0, 640, 480).scaled_to(160, 120)
    rgb, depth = render_view(demo_room(), c2w, intr, supersample=2)
    shipped_rgb = np.asarray(Image.open(EXAMPLE / "seq-03" / "frame-000005.color.png")) / 255.0
    shipped_depth = load_depth_meters(EXAMPLE / "seq-03" / "frame-000005.depth.png", 1e-3, (0, 65535))
    assert np.abs(shipped_rgb - rgb).max() < 1.5 / 255
    assert np.abs(shipped_depth - depth).max() < 0.0006


def test_office_room_with_hard_queries(tmp_path):
    """``--room office --hard-queries N``: another room, and queries with no mapping view within
    0.5 m looking within 90 deg of them, listed in hard_queries.txt and parsed as test frames."""
    from nerfloc_plugins.data.synthetic_scene import office_room, write_sevenscenes_scene

    counts = write_sevenscenes_scene(
        tmp_path / "office", 64, 48, frames_per_train_seq=8, frames_test=2, supersample=1, room="office", hard_queries=3
    )
    assert counts == {"train": 16, "test": 5}
    parser = SevenScenesDataParserConfig(data=tmp_path / "office").setup()
    train, test = parser.frames("train"), parser.frames("test")
    hard = (tmp_path / "office" / "hard_queries.txt").read_text().split()
    assert hard == [f"seq-04/frame-00000{i}.color.png" for i in range(3)]
    assert {f.name for f in test} >= set(hard)
    centres = np.array([f.c2w[:3, 3] for f in train])
    axes = np.array([f.c2w[:3, 2] for f in train])
    for frame in (f for f in test if f.name in hard):
        near = np.linalg.norm(centres - frame.c2w[:3, 3], axis=1) < 0.5
        assert not np.any(near & (axes @ frame.c2w[:3, 2] > 0.0)), frame.name
    # the office is not the example room: other size and another wall texture where the demo has brick
    room = office_room()[0]
    assert room.hi != demo_room()[0].hi and room.textures != demo_room()[0].textures
    with pytest.raises(ValueError, match="room 'attic'"):
        write_sevenscenes_scene(tmp_path / "x", 32, 24, 2, 1, room="attic")


def test_lit_room_casts_shadows_and_has_view_dependent_highlights():
    """``--lighting lit``: a floor point whose path to the lamp the desk blocks is darker with
    shadows than without (an unblocked one is not), and a glossy floor point changes colour with
    the viewpoint (the lamp's highlight), which the flat lighting never does."""
    from nerfloc_plugins.data.synthetic_scene import LIGHTINGS, Lighting, ray_cast

    boxes = demo_room()
    lit, no_shadows = LIGHTINGS["lit"], Lighting(shadows=False, gloss=LIGHTINGS["lit"].gloss)

    def floor_colour(point, eye, lighting):
        eye = np.asarray(eye, dtype=float)[None]
        colour, t = ray_cast(boxes, eye, np.asarray(point)[None] - eye, lighting)
        assert t[0] == pytest.approx(1.0)  # the ray reaches the floor point itself
        return colour[0]

    # the desk (0.6..1.4, 0.4..1.1, top 0.75 m) stands between the lamp (0.3, -0.2, 2.3) and this point
    shadowed = (1.79, 1.56, 0.0)
    assert np.mean(floor_colour(shadowed, (1.79, 1.56, 1.0), lit)) < 0.6 * np.mean(
        floor_colour(shadowed, (1.79, 1.56, 1.0), no_shadows)
    )
    free = (-0.6, -0.6, 0.0)
    np.testing.assert_allclose(
        floor_colour(free, (-0.6, -0.6, 1.0), lit), floor_colour(free, (-0.6, -0.6, 1.0), no_shadows)
    )
    # under the lamp: seen from straight above (mirror direction) vs from the side
    spot, above, side = (0.3, -0.2, 0.0), (0.3, -0.2, 1.5), (1.8, -0.2, 0.6)
    assert np.mean(floor_colour(spot, above, lit) - floor_colour(spot, side, lit)) > 0.1
    flat = LIGHTINGS["flat"]
    np.testing.assert_allclose(floor_colour(spot, above, flat), floor_colour(spot, side, flat))


def test_frames_rendered_in_parallel_are_the_same_files(tmp_path):
    from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene

    args = dict(width=32, height=24, frames_per_train_seq=3, frames_test=2, supersample=1)
    one = write_sevenscenes_scene(tmp_path / "one", workers=1, **args)
    three = write_sevenscenes_scene(tmp_path / "three", workers=3, **args)
    assert one == three == {"train": 6, "test": 2}
    names = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(names) == 8 * 3 + 2
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes(), name


@pytest.mark.parametrize("name", ["photo-a", "photo-b", "photo-c"])
def test_photo_rooms_look_like_lived_in_rooms(name):
    """Photo rooms: photographs at their natural scale on painted walls under a plain ceiling, so
    a good part of every view has nothing to match on; one picture hung on two facing walls; no
    camera of the default loops inside furniture; rooms differ from each other."""
    from nerfloc_plugins.data.photo_rooms import PHOTO_ROOM_STYLES
    from nerfloc_plugins.data.synthetic_scene import (
        LIGHTINGS,
        ROOMS,
        nearest_hits,
        repeated_picture_query_poses,
        repeated_pictures,
    )

    boxes = ROOMS[name]()
    assert boxes == ROOMS[name]()  # deterministic
    intrinsics = Intrinsics(525.0, 525.0, 320.0, 240.0, 640, 480).scaled_to(40, 30)
    plain, photo = 0, 0
    for c2w in [c for split, poses in default_sequences(8, 4).values() for c in poses]:
        u, v = np.meshgrid((np.arange(40) + 0.5 - intrinsics.cx) / intrinsics.fx,
                           (np.arange(30) + 0.5 - intrinsics.cy) / intrinsics.fy)  # fmt: skip
        cam = np.stack([u, v, np.ones_like(u)], -1)
        dirs = cam.reshape(-1, 3) @ c2w[:3, :3].T
        t, box, face = nearest_hits(boxes, np.broadcast_to(c2w[:3, 3], dirs.shape), dirs)
        assert np.all(np.isfinite(t)) and t.min() > 0.3  # closed room, no camera inside or against furniture
        textured = np.array([boxes[b].textures[f] is not None for b, f in zip(box, face)])
        plain, photo = plain + np.sum(~textured), photo + np.sum(textured)
    assert 0.25 < plain / (plain + photo) < 0.75, plain / (plain + photo)
    rgb, _ = render_view(boxes, c2w, intrinsics, 1, LIGHTINGS["lit"])
    assert rgb.std() > 0.05
    # the repeated picture: two copies on facing walls, and queries facing the second
    (copies,) = repeated_pictures(boxes)
    assert [next(t for t in c.textures if t) for c in copies] == [PHOTO_ROOM_STYLES[name].repeated] * 2
    assert np.sign(copies[0].lo[1]) == -np.sign(copies[1].lo[1])
    query = repeated_picture_query_poses(boxes, 1)[0]
    assert np.linalg.norm(query[:3, 3] - (np.asarray(copies[1].lo) + copies[1].hi) / 2) < 1.8
    others = [ROOMS[n]()[0] for n in PHOTO_ROOM_STYLES if n != name]
    assert all(boxes[0].hi != other.hi for other in others)


def test_make_scene_renders_a_photo_room_with_hard_and_repeated_queries(tmp_path):
    from nerfloc_plugins.scripts.make_scene import MakeScene

    MakeScene(output_dir=tmp_path / "room", width=32, height=24, frames_per_train_seq=4, frames_test=2,
              supersample=1, room="photo-c", lighting="lit", hard_queries=2, repeated_queries=2).main()  # fmt: skip
    parser = SevenScenesDataParserConfig(data=tmp_path / "room").setup()
    assert len(parser.frames("train")) == 8 and len(parser.frames("test")) == 6
    assert len((tmp_path / "room" / "hard_queries.txt").read_text().split()) == 4
    image = np.asarray(Image.open(tmp_path / "room" / "seq-04" / "frame-000003.color.png"))
    assert image.shape == (24, 32, 3) and image.std() > 5
