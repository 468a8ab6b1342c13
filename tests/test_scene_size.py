"""Steps whose cost used to grow faster than the scene: each scale-safe version gives what the
all-at-once version gives (block-wise matching, column-pruned Hungarian, candidate-limited
covisibility, stacked teacher maps)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from nerfloc_plugins.data.covisibility import CovisibilityIndex, overlap
from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.data.synthetic_scene import wandering_room_cameras
from nerfloc_plugins.features import matching
from nerfloc_plugins.methods.neuraloc.neuraloc_teachers import StackedMaps, sample_map


def _scores(n: int, m: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.nn.functional.normalize(torch.randn(m, 16, generator=gen), dim=-1)
    query = torch.nn.functional.normalize(
        ref[torch.randint(m, (n,), generator=gen)] + 0.3 * torch.randn(n, 16, generator=gen), dim=-1
    )
    return query, ref


def test_blockwise_mutual_matches_equal_the_whole_matrix():
    query, ref = _scores(300, 500, seed=0)
    sim = matching.cosine_similarity(query, ref)
    sim[::7, ::5] = float("-inf")  # NeuraLoc's filtered candidates
    sim[3, :] = sim[4, :]  # ties between rows: the first row wins, as argmax does
    for threshold, ratio in ((None, None), (0.6, None), (0.5, 0.9)):
        whole, whole_scores = matching.mutual_nearest_neighbors(sim, threshold, ratio)
        for block in (1, 7, 64, 4096):
            got, scores = matching.blockwise_mutual_matches(lambda s, e: sim[s:e], len(sim), threshold, ratio, block)
            assert torch.equal(got, whole), (threshold, ratio, block)
            assert torch.equal(scores, whole_scores)
        assert len(whole) > 30  # the case is not trivially empty
    got, _ = matching.mutual_nearest_descriptors(query * 3.0, ref, 0.6, rows_per_block=11)  # normalises itself
    assert torch.equal(got, matching.mutual_nearest_neighbors(matching.cosine_similarity(query, ref), 0.6)[0])


def test_hungarian_on_useful_columns_keeps_the_whole_matrix_pairs():
    for seed, (n, m) in enumerate(((40, 400), (60, 50), (30, 30))):
        query, ref = _scores(n, m, seed)
        scores = matching.cosine_similarity(query, ref)
        got, got_scores = matching.hungarian_matches(scores, min_score=0.6)
        s = np.where(scores.numpy() < 0.6, -1e6, scores.numpy())  # the all-columns assignment
        rows, cols = linear_sum_assignment(s, maximize=True)
        keep = s[rows, cols] > -1e5
        expected = sorted(zip(rows[keep].tolist(), cols[keep].tolist()))
        assert sorted(map(tuple, got.tolist())) == expected and len(expected) > 5
        assert torch.allclose(got_scores, scores[got[:, 0], got[:, 1]])
    assert len(matching.hungarian_matches(torch.zeros(4, 9), min_score=0.5)[0]) == 0


def _room_frames(n: int, seed: int = 0):
    """``n`` 64x48 cameras wandering inside a 6 x 6 x 3 m box looking around, and the wall points each sees."""
    return wandering_room_cameras(n, Intrinsics(fx=40.0, fy=40.0, cx=32.0, cy=24.0, width=64, height=48), seed)


def test_candidate_covisibility_finds_the_all_pairs_top_k():
    frames, points = _room_frames(240)
    limited = CovisibilityIndex(frames, points, candidates=40)
    every = CovisibilityIndex(frames, points, candidates=1000)
    assert len(limited.candidates_near(limited.centres[0], limited.looks[0])) <= 80
    got, expected = limited.pairs(top_k=5, min_overlap=0.2), every.pairs(top_k=5, min_overlap=0.2)
    assert len(expected) > 600

    def top_scores(pairs):  # ties (overlap 1.0 is common) may pick other frames of the same score
        out = {}
        for q, _, s in pairs:
            out.setdefault(q, []).append(s)
        return out

    assert top_scores(got) == top_scores(expected)
    assert sum(a == b for a, b in zip(got, expected)) > 0.8 * len(expected)
    # the overlap of a pair is the single-pair definition
    q, r, s = expected[17]
    assert s == overlap(points[r], frames[q])
    # a pose without points gets the best-overlapping frame, as an all-frames argmax does
    test_frames, _ = _room_frames(30, seed=5)
    for frame in test_frames:
        brute = int(np.argmax([overlap(p, frame) for p in points]))
        assert overlap(points[limited.best_reference(frame)], frame) == overlap(points[brute], frame)


def test_stacked_teacher_maps_read_what_each_map_reads():
    gen = torch.Generator().manual_seed(0)
    maps = [torch.randn(5, 12, 16, generator=gen) for _ in range(3)] + [torch.randn(5, 6, 8, generator=gen)]
    sizes = [(64, 48)] * 3 + [(32, 24)]
    stack = StackedMaps("cpu", torch.float32)
    for m, size in zip(maps, sizes):
        stack.add(m, size)
    stack.finish()
    assert len(stack) == 4 and len(stack.groups) == 2
    images = torch.randint(4, (500,), generator=gen)
    extent = torch.tensor([[64.0, 48.0]])[images.clamp(max=0)] / torch.where(images[:, None] == 3, 2.0, 1.0)
    uv = torch.rand(500, 2, generator=gen) * (extent + 8) - 4  # some pixels outside: border values
    got = stack.sample(images, uv, "cpu")
    expected = torch.stack([sample_map(maps[i], uv[k : k + 1], sizes[i])[0] for k, i in enumerate(images.tolist())])
    assert got.shape == (500, 5) and torch.allclose(got, expected, atol=1e-5)
