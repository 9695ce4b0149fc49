"""Tests for stylelib.losses: Gram matrices, relative errors, AdaIN statistics, TV, the sum."""

from __future__ import annotations

import math

import pytest
import torch

from stylelib.backbones import FeatureExtractor
from stylelib.errors import StylelibError
from stylelib.losses import (
    STYLE_LAYERS,
    PerceptualLoss,
    content_loss,
    gram_matrix,
    mean_std,
    mean_std_loss,
    relative_error,
    structure_loss,
    style_loss,
    total_variation,
)


def seeded(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def plain_gram(features: torch.Tensor) -> torch.Tensor:
    """The textbook formula with autograd's own backward, to compare the library's against."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (height * width)


# --------------------------------------------------------------------------- Gram matrix


def test_gram_matrix_by_hand() -> None:
    # Two channels over three positions: a = (1, 2, 3), b = (0, 1, -1).
    features = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]).reshape(1, 2, 1, 3)
    # a·a = 14, a·b = 2 - 3 = -1, b·b = 2; divided by the 3 positions.
    expected = torch.tensor([[[14.0, -1.0], [-1.0, 2.0]]]) / 3
    assert torch.allclose(gram_matrix(features), expected)


def test_gram_matrix_per_batch_item() -> None:
    features = seeded(3, 4, 5, 6)
    grams = gram_matrix(features)
    assert grams.shape == (3, 4, 4)
    for index in range(3):
        assert torch.allclose(grams[index], gram_matrix(features[index : index + 1])[0])
    assert torch.allclose(grams, grams.transpose(1, 2))


def test_gram_matrix_ignores_where_things_are() -> None:
    """A Gram matrix sums over positions, so shuffling the positions cannot change it."""
    features = seeded(1, 8, 5, 7)
    order = torch.randperm(35, generator=torch.Generator().manual_seed(1))
    shuffled = features.reshape(1, 8, 35)[:, :, order].reshape(1, 8, 7, 5)  # new shape too
    assert not torch.equal(features.reshape(1, 8, 35), shuffled.reshape(1, 8, 35))
    assert torch.allclose(gram_matrix(features), gram_matrix(shuffled), atol=1e-6)


def test_gram_matrix_is_an_average_over_positions() -> None:
    """Same texture, four times the area: the same Gram matrix (comparable across sizes)."""
    tile = seeded(1, 4, 3, 3)
    big = tile.repeat(1, 1, 2, 2)
    assert torch.allclose(gram_matrix(tile), gram_matrix(big), atol=1e-6)


def test_gram_matrix_gradient_is_exact() -> None:
    """The custom symmetric backward must agree with finite differences and with autograd."""
    features = torch.randn(2, 4, 3, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(gram_matrix, (features,))
    weights = torch.randn(2, 4, 4, dtype=torch.double)  # a non-symmetric upstream gradient
    (grad,) = torch.autograd.grad((gram_matrix(features) * weights).sum(), features)
    (expected,) = torch.autograd.grad((plain_gram(features) * weights).sum(), features)
    assert torch.allclose(grad, expected)


def test_gram_matrix_backward_under_autocast() -> None:
    """Float32 features inside an autocast region: the Gram's matmul runs in low precision.

    Its output (and so its incoming gradient) is bfloat16 while the saved features stay float32;
    the backward must still work and match autograd's plain formula.
    """
    features = seeded(1, 8, 4, 4).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(features)
    gram.float().sum().backward()
    assert features.grad is not None

    reference = features.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = plain_gram(reference)
    expected.float().sum().backward()
    assert reference.grad is not None
    assert torch.allclose(features.grad, reference.grad, rtol=2e-2, atol=1e-3)


# --------------------------------------------------------------------------- relative errors


def test_relative_error_by_hand() -> None:
    value = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    target = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    # Row 1: (1 + 1) / 4 = 0.5. Row 2: 4 / 1 = 4. Mean over the batch: 2.25.
    assert relative_error(value, target).item() == pytest.approx(2.25, rel=1e-6)


def test_relative_error_zero_for_equal_inputs_and_scale_invariant() -> None:
    value, target = seeded(2, 3, 4, 4, seed=1), seeded(2, 3, 4, 4, seed=2)
    assert relative_error(target, target).item() == 0.0
    base = relative_error(value, target).item()
    assert base > 0
    assert relative_error(10 * value, 10 * target).item() == pytest.approx(base, rel=1e-5)
    assert content_loss(torch.zeros_like(target), target).item() == pytest.approx(1.0, rel=1e-6)


def test_style_loss_compares_grams() -> None:
    features = seeded(1, 4, 6, 6)
    target = gram_matrix(features)
    assert style_loss(features, target).item() == 0.0
    shuffled = features.flip(-1).flip(-2)  # same statistics, different layout
    assert style_loss(shuffled, target).item() == pytest.approx(0.0, abs=1e-10)
    # Doubling the features quadruples the Gram: error (4 - 1)^2 / 1^2 = 9.
    assert style_loss(2 * features, target).item() == pytest.approx(9.0, rel=1e-5)


# --------------------------------------------------------------------------- AdaIN statistics


def test_mean_std_by_hand() -> None:
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[7.0, 7.0], [7.0, 7.0]]]])
    mean, std = mean_std(features)
    assert mean.shape == (1, 2, 1, 1) and std.shape == (1, 2, 1, 1)
    assert mean.flatten().tolist() == pytest.approx([2.5, 7.0])
    # Population variance of 1..4 is 1.25; 1e-5 keeps the square root differentiable at 0.
    assert std.flatten().tolist() == pytest.approx([math.sqrt(1.25 + 1e-5), math.sqrt(1e-5)])


def test_mean_std_loss_by_hand() -> None:
    flat_a = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    flat_b = torch.tensor([2.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    # Equal (tiny) stds; means differ by 1 in one channel of two: (1 + 0) / 2.
    assert mean_std_loss(flat_a, flat_b).item() == pytest.approx(0.5, rel=1e-6)

    spread = torch.tensor([0.0, 2.0, 0.0, 2.0]).view(1, 1, 2, 2)  # mean 1, std 1
    constant = torch.ones(1, 1, 2, 2)  # mean 1, std 0
    expected = (math.sqrt(1 + 1e-5) - math.sqrt(1e-5)) ** 2
    assert mean_std_loss(spread, constant).item() == pytest.approx(expected, rel=1e-5)
    assert mean_std_loss(spread, spread).item() == 0.0


def test_structure_loss_ignores_each_channels_statistics_not_the_layout() -> None:
    """A painting's colours (any positive per-channel scale and shift) cost nothing; moving
    things costs, and a layout unrelated to the photo's costs about 2 (two unit variances)."""
    torch.manual_seed(0)
    photo = torch.randn(2, 4, 16, 16)
    restyled = photo * torch.tensor([0.5, 3.0, 1.0, 7.0]).view(1, 4, 1, 1) + torch.randn(1, 4, 1, 1)
    assert structure_loss(restyled, photo).item() == pytest.approx(0.0, abs=1e-4)
    moved = structure_loss(torch.roll(photo, 3, dims=3), photo).item()
    unrelated = structure_loss(torch.randn(2, 4, 16, 16), photo).item()
    assert moved > 1.5 and unrelated == pytest.approx(2.0, abs=0.3)
    assert mean_std_loss(restyled, photo).item() > 1


# --------------------------------------------------------------------------- total variation


def test_total_variation() -> None:
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0.0
    checker = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    # Every vertical and every horizontal neighbour differs by 1: 1 + 1.
    assert total_variation(checker).item() == pytest.approx(2.0)
    ramp = torch.linspace(0, 1, 5).view(1, 1, 1, 5).expand(1, 3, 4, 5)
    # Only horizontal steps of 0.25: 0.0625; no vertical change.
    assert total_variation(ramp).item() == pytest.approx(0.0625)
    noise = seeded(1, 3, 16, 16)
    smooth = torch.nn.functional.avg_pool2d(noise, 3, stride=1, padding=1)
    assert total_variation(noise) > total_variation(smooth) > 0


# --------------------------------------------------------------------------- PerceptualLoss


@pytest.mark.parametrize(
    ("name", "value"),
    [("content_weight", -1.0), ("style_weight", float("nan")), ("tv_weight", float("inf"))],
)
def test_bad_weights(extractor: FeatureExtractor, name: str, value: float) -> None:
    with pytest.raises(StylelibError, match=rf"{name} must be a finite number >= 0, got {value}"):
        PerceptualLoss(extractor=extractor, **{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_bad_layer_weight(extractor: FeatureExtractor, bad: float) -> None:
    with pytest.raises(StylelibError, match="Style layer weights must be finite numbers >= 0"):
        PerceptualLoss(extractor=extractor, style_layers={"relu1_1": 1.0, "relu2_1": bad})


def test_layer_weights_from_a_list_share_one(extractor: FeatureExtractor) -> None:
    loss = PerceptualLoss(extractor=extractor, style_layers=["relu1_1", "relu3_1", "relu5_1"])
    assert list(loss.style_weights) == ["relu1_1", "relu3_1", "relu5_1"]
    assert list(loss.style_weights.values()) == pytest.approx([1 / 3] * 3)
    assert sum(PerceptualLoss(extractor=extractor).style_weights.values()) == pytest.approx(1.0)
    mapping = {"relu1_1": 2.0, "relu4_1": 0.5}
    assert PerceptualLoss(extractor=extractor, style_layers=mapping).style_weights == mapping


def test_a_style_blend_targets_the_weighted_mean_of_the_gram_matrices(
        extractor: FeatureExtractor) -> None:
    torch.manual_seed(0)
    first, second = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 24, 40)
    loss = PerceptualLoss(extractor=extractor)
    singles = []
    for image in (first, second):
        loss.set_style(image)
        singles.append(loss.style_targets)
    loss.set_style([first, second], [0.25, 0.75])
    for layer, target in loss.style_targets.items():
        torch.testing.assert_close(target, 0.25 * singles[0][layer] + 0.75 * singles[1][layer])
    with pytest.raises(StylelibError,
                       match="Got 1 blend weights for 2 styles: pass one weight per style"):
        loss.set_style([first, second], [1.0])


def test_extractor_must_compute_every_layer(extractor: FeatureExtractor) -> None:
    with pytest.raises(StylelibError, match=r"does not compute \['relu3_2'\]"):
        PerceptualLoss(extractor=extractor, content_layers=["relu3_2"])


def test_targets_must_be_set_first(extractor: FeatureExtractor, photo: torch.Tensor) -> None:
    loss = PerceptualLoss(extractor=extractor)
    with pytest.raises(StylelibError, match=r"Call set_content\(image\)"):
        loss(photo)
    loss.set_content(photo)
    with pytest.raises(StylelibError, match=r"Call set_style\(image\)"):
        loss(photo)
    style_only = PerceptualLoss(extractor=extractor, content_weight=0.0)
    style_only.set_style(photo)
    assert style_only(photo).style.item() == pytest.approx(0.0, abs=1e-6)


def test_content_term_is_zero_at_the_content(
    perceptual: PerceptualLoss, photo: torch.Tensor
) -> None:
    at_content = perceptual(photo)
    assert at_content.content.item() == 0.0
    assert at_content.style.item() > 0.01
    weighted_style = perceptual.weights[1] * at_content.style.item()
    assert at_content.total.item() == pytest.approx(weighted_style, rel=1e-6)
    elsewhere = perceptual(seeded(*photo.shape))
    assert elsewhere.content.item() > 0.1


def test_style_term_is_zero_at_the_style(
    extractor: FeatureExtractor, photo: torch.Tensor, painting: torch.Tensor
) -> None:
    style = torch.nn.functional.interpolate(painting, size=photo.shape[-2:], mode="bilinear")
    loss = PerceptualLoss(extractor=extractor, content_weight=2.0, tv_weight=3.0)
    loss.set_content(photo)
    loss.set_style(style)
    terms = loss(style)
    assert terms.style.item() == pytest.approx(0.0, abs=1e-6)
    assert terms.content.item() > 0.01  # the painting is not the photo's layout
    assert terms.tv.item() == pytest.approx(total_variation(style).item(), rel=1e-6)
    expected = 2.0 * terms.content.item() + 3.0 * terms.tv.item()
    assert terms.total.item() == pytest.approx(expected, rel=1e-5)
    floats = terms.as_floats()
    assert set(floats) == {"total", "content", "style", "tv"}
    assert all(isinstance(v, float) for v in floats.values())


def test_style_term_uses_the_layer_weights(
    extractor: FeatureExtractor, photo: torch.Tensor, painting: torch.Tensor
) -> None:
    """The style term is the weighted sum of per-layer Gram errors."""
    loss = PerceptualLoss(
        extractor=extractor, content_weight=0.0, style_layers={"relu1_1": 2.0, "relu3_1": 0.5}
    )
    loss.set_style(painting)
    features = extractor(photo)
    targets = extractor(painting)
    expected = 2.0 * style_loss(features["relu1_1"], gram_matrix(targets["relu1_1"])) + 0.5 * (
        style_loss(features["relu3_1"], gram_matrix(targets["relu3_1"]))
    )
    assert loss(photo).style.item() == pytest.approx(expected.item(), rel=1e-5)


def test_default_layers_are_the_papers() -> None:
    assert STYLE_LAYERS == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
