"""SuperPoint from a local weights file: loading, clear errors, keypoints/descriptors and matching."""

import numpy as np
import pytest
import torch

from nerfloc_plugins.localize.feature_matching import FeatureMatchConfig, LocalFeatureMatcher
from nerfloc_plugins.localize.superpoint import SuperPointConfig, SuperPointNet, simple_nms


def test_nms_keeps_only_local_maxima():
    s = torch.zeros(20, 20)
    s[5, 5], s[5, 7], s[15, 15] = 0.9, 0.5, 0.4  # (5,7) lies within radius 4 of the stronger (5,5)
    kept = simple_nms(s, 4)
    assert torch.nonzero(kept).tolist() == [[5, 5], [15, 15]]


def test_superpoint_from_a_weights_file_detects_describes_and_matches(tmp_path):
    torch.manual_seed(0)
    net = SuperPointNet()
    # PyTorch's default init shrinks activations through the 10 layers until every descriptor is the
    # bias-driven same vector (pairwise cos > 0.99999, ties broken by float rounding); a variance-
    # preserving init keeps random descriptors distinct
    for conv in (m for m in net.modules() if isinstance(m, torch.nn.Conv2d)):
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
    path = tmp_path / "superpoint_v1.pth"
    torch.save(net.state_dict(), path)  # same parameter names as the Magic Leap file
    no_ratio = FeatureMatchConfig(min_similarity=0.9, ratio=None)  # random weights: weakly distinctive
    matcher = LocalFeatureMatcher(
        "superpoint", matching=no_ratio, superpoint=SuperPointConfig(path, detection_threshold=0.0)
    )
    rng = np.random.default_rng(0)
    image = rng.random((96, 128, 3)).astype(np.float32)
    f = matcher.extract(image)
    assert len(f) > 10 and f.descriptors.shape == (len(f), 256)
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-5)
    assert (f.keypoints[:, 0] > 4).all() and (f.keypoints[:, 0] < 124).all()  # border removed
    assert np.all(np.diff(f.scores) <= 0)  # strongest first
    m = matcher.match(f, (128, 96), f, (128, 96))
    # an image matches itself (random weights give some near-equal descriptors: mostly identity)
    assert len(m) > 0.3 * len(f) and (m[:, 0] == m[:, 1]).mean() > 0.8


def test_superpoint_needs_weights_and_says_which_file_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="--superpoint.weights"):
        LocalFeatureMatcher("superpoint")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        LocalFeatureMatcher("superpoint", superpoint=SuperPointConfig(tmp_path / "missing.pth"))
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="other.pth: not SuperPoint weights"):
        LocalFeatureMatcher("superpoint", superpoint=SuperPointConfig(bad))
