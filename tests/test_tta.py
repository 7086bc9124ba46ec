"""Test-time augmentation views: what each mode shows the network."""

import torch

from ferlab.tta import TTA_MODES, mean_log_probs, tta_views


def test_views_of_each_mode():
    x = torch.arange(2 * 48 * 48, dtype=torch.float32).reshape(2, 1, 48, 48)
    counts = {mode: len(tta_views(x, mode)) for mode in TTA_MODES}
    assert counts == {"none": 1, "flip": 2, "flip-crops": 6, "ten-crop": 10}
    views = tta_views(x, "ten-crop")
    assert all(v.shape == x.shape for v in views)
    torch.testing.assert_close(views[1], x.flip(-1))
    # the first crop is the face shifted 2 px (48 // 24) down and right, its top-left edge replicated ...
    torch.testing.assert_close(views[2][..., 2:, 2:], x[..., :-2, :-2])
    torch.testing.assert_close(views[2][..., 0, 2:], x[..., 0, :-2])
    # ... the last one shifted up and left; ten-crop follows each crop with its mirror image
    torch.testing.assert_close(views[8][..., :-2, :-2], x[..., 2:, 2:])
    for crop, mirrored in zip(views[2::2], views[3::2], strict=True):
        torch.testing.assert_close(mirrored, crop.flip(-1))
    # flip-crops is ten-crop without the mirrored crops
    for a, b in zip(tta_views(x, "flip-crops"), [*views[:2], *views[2::2]], strict=True):
        torch.testing.assert_close(a, b)


def test_mean_log_probs_averages_in_log_space():
    x = torch.randn(3, 1, 48, 48)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    with torch.no_grad():
        expected = torch.stack([net(v).log_softmax(1) for v in (x, x.flip(-1))]).mean(0)
        torch.testing.assert_close(mean_log_probs(net, x, "flip"), expected)
        # a temperature divides the scores before the softmax
        torch.testing.assert_close(mean_log_probs(net, x, "none", temperature=2.0), (net(x) / 2).log_softmax(1))
