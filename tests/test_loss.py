import math

import numpy as np
import pytest
import torch

from unetkit.losses import WeightMapCrossEntropyLoss
from unetkit.networks import UNet


def hand_loss(logits, classes, weights):
    """-mean(w * log softmax[class]) written out pixel by pixel."""
    b, c, *spatial = logits.shape
    total = 0.0
    flat_logits = logits.permute(0, *range(2, logits.ndim), 1).reshape(-1, c).tolist()
    for z, k, w in zip(flat_logits, classes.reshape(-1).tolist(), weights.reshape(-1).tolist()):
        log_sum = math.log(sum(math.exp(v) for v in z))
        total += -w * (z[int(k)] - log_sum)
    return total / len(flat_logits)


def test_equals_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    classes = torch.randint(0, 3, (2, 1, 4, 5), generator=g).float()
    weights = torch.rand(2, 1, 4, 5, generator=g) * 10
    loss = WeightMapCrossEntropyLoss()(logits, torch.cat([classes, weights], 1))
    assert loss.item() == pytest.approx(hand_loss(logits, classes, weights), rel=1e-5)


def test_crop_is_central():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 2, 5, 6, generator=g)
    centre = (slice(None), slice(None), slice(2, 7), slice(1, 7))  # 9 -> 5 starts at 2, 8 -> 6 at 1
    classes = torch.randint(0, 2, (1, 1, 9, 8), generator=g).float()
    weights = torch.zeros(1, 1, 9, 8)
    weights[centre] = torch.rand(1, 1, 5, 6, generator=g) + 0.5
    full = WeightMapCrossEntropyLoss()(logits, classes, weights)
    cropped = WeightMapCrossEntropyLoss()(logits, classes[centre], weights[centre])
    assert full.item() == pytest.approx(cropped.item(), rel=1e-6)
    assert full.item() == pytest.approx(hand_loss(logits, classes[centre], weights[centre]), rel=1e-5)
    shifted = (slice(None), slice(None), slice(3, 8), slice(1, 7))
    assert WeightMapCrossEntropyLoss()(logits, classes[shifted], weights[shifted]).item() != pytest.approx(full.item())


def test_two_channel_target_equals_separate_weight():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 2, 3, 3, generator=g)
    classes = torch.randint(0, 2, (2, 1, 7, 7), generator=g).float()
    weights = torch.rand(2, 1, 7, 7, generator=g)
    loss = WeightMapCrossEntropyLoss()
    assert loss(logits, torch.cat([classes, weights], 1)).item() == loss(logits, classes, weights).item()


def test_zero_weight_gives_zero_loss_and_zero_gradient():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    target = torch.zeros(1, 2, 4, 4)
    target[:, 0] = 1
    loss = WeightMapCrossEntropyLoss()(logits, target)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.abs().max().item() == 0.0


def test_gradient_is_weighted_softmax_minus_one_hot():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 2, 3, 4, generator=g, requires_grad=True)
    classes = torch.randint(0, 2, (1, 3, 4), generator=g)
    weights = torch.rand(1, 1, 3, 4, generator=g) * 5
    WeightMapCrossEntropyLoss()(logits, classes[:, None].float(), weights).backward()
    one_hot = torch.nn.functional.one_hot(classes, 2).permute(0, 3, 1, 2)
    expected = (logits.detach().softmax(1) - one_hot) * weights / 12
    torch.testing.assert_close(logits.grad, expected, rtol=1e-5, atol=1e-7)


def test_works_in_3d_with_reductions():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 2, 3, 4, 5, generator=g)
    classes = torch.randint(0, 2, (1, 5, 6, 7), generator=g).float()
    target = torch.stack([classes, torch.rand(1, 5, 6, 7, generator=g)], 1)
    per_pixel = WeightMapCrossEntropyLoss(reduction="none")(logits, target)
    assert per_pixel.shape == (1, 3, 4, 5)
    total = WeightMapCrossEntropyLoss(reduction="sum")(logits, target)
    assert total.item() == pytest.approx(per_pixel.sum().item(), rel=1e-6)
    mean = WeightMapCrossEntropyLoss()(logits, target).item()
    centre = target[..., 1:4, 1:5, 1:6]
    assert mean == pytest.approx(hand_loss(logits, centre[:, :1], centre[:, 1:]), rel=1e-5)


def test_numerically_stable_for_huge_logits():
    logits = torch.tensor([[[[1e4]], [[-1e4]]]], requires_grad=True)
    loss = WeightMapCrossEntropyLoss()(logits, torch.tensor([[[[1.0]], [[2.0]]]]))
    loss.backward()
    assert loss.item() == pytest.approx(2 * 2e4) and torch.isfinite(logits.grad).all()


def test_trains_a_valid_unet_on_input_sized_targets():
    torch.manual_seed(0)
    net = UNet(features=(4, 8, 16, 32, 64))
    image = torch.rand(1, 1, 188, 188)
    target = torch.stack([(image[:, 0] > 0.5).float(), torch.ones(1, 188, 188)], 1)
    logits = net(image)
    assert logits.shape == (1, 2, 4, 4)
    loss = WeightMapCrossEntropyLoss()(logits, target)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_argument_errors_name_the_shapes():
    loss = WeightMapCrossEntropyLoss()
    logits = torch.zeros(1, 2, 5, 5)
    with pytest.raises(ValueError, match=r"cannot crop target of spatial size \(4, 6\) to the network output \(5, 5\)"):
        loss(logits, torch.zeros(1, 2, 4, 6))
    with pytest.raises(ValueError, match=r"target \(1, 3, 7, 7\) must have 2 channels"):
        loss(logits, torch.zeros(1, 3, 7, 7))
    with pytest.raises(ValueError, match=r"target and weight must both be \(B, 1, \*spatial\)"):
        loss(logits, torch.zeros(1, 2, 7, 7), torch.zeros(1, 1, 7, 7))
    with pytest.raises(ValueError, match=r"same batch size.*logits \(1, 2, 5, 5\) and target \(2, 2, 7, 7\)"):
        loss(logits, torch.zeros(2, 2, 7, 7))
    with pytest.raises(ValueError, match=r"class indices must lie in 0..1 .* got 2..2"):
        loss(logits, torch.stack([torch.full((1, 5, 5), 2.0), torch.ones(1, 5, 5)], 1))
    with pytest.raises(ValueError, match="reduction='avg'"):
        WeightMapCrossEntropyLoss(reduction="avg")


def test_bundle_style_pipeline_feeds_the_loss():
    from monai.transforms import CastToTyped, Compose, ConcatItemsd

    from unetkit.transforms import InstanceToSemanticd, RandPaperElasticd, WeightMapd

    lab = np.zeros((1, 41, 45), np.uint16)
    lab[0, 5:20, 5:22], lab[0, 5:20, 22:40], lab[0, 24:38, 10:30] = 3, 8, 2
    image = np.random.default_rng(0).random((1, 41, 45)).astype(np.float32)
    pipeline = Compose([
        WeightMapd("label", weight_key="weight"),
        InstanceToSemanticd("label"),
        RandPaperElasticd(["image", "label", "weight"], mode=("bicubic", "nearest")),
        CastToTyped(["image", "label", "weight"], dtype="float32"),
        ConcatItemsd(["label", "weight"], name="label"),
    ]).set_random_state(seed=0)
    out = pipeline({"image": image, "label": lab})
    target = torch.as_tensor(out["label"])[None]
    assert target.shape == (1, 2, 41, 45) and set(target[0, 0].unique().tolist()) == {0.0, 1.0}
    assert target[0, 1].min() >= 0 and target[0, 1].max() > 5  # the border term survived the warp
    logits = torch.zeros(1, 2, 21, 25, requires_grad=True)
    loss = WeightMapCrossEntropyLoss()(logits, target)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2) * target[0, 1, 10:31, 10:35].mean().item(), rel=1e-5)


def test_logits_scrambled_in_an_ignored_region_change_neither_loss_nor_gradients():
    from unetkit.transforms import InstanceToSemantic, WeightMap

    labels = np.zeros((1, 40, 44), np.int64)
    labels[0, 5:15, 5:15], labels[0, 20:30, 8:18] = 1, 2
    labels[0, :, 30:] = 65535  # unannotated
    weight = WeightMap(ignore_value=65535)(labels)
    target = InstanceToSemantic()(np.where(labels == 65535, 0, labels))
    loss_fn = WeightMapCrossEntropyLoss()
    logits = torch.randn(1, 2, 40, 44, generator=torch.Generator().manual_seed(0))
    scrambled = logits.clone()
    scrambled[..., 30:] = torch.randn(1, 2, 40, 14, generator=torch.Generator().manual_seed(1)) * 50
    grads = []
    for x in (logits, scrambled):
        x = x.clone().requires_grad_(True)
        loss = loss_fn(x, torch.as_tensor(target[None], dtype=torch.float32), torch.as_tensor(weight[None]))
        loss.backward()
        grads.append((loss.item(), x.grad[..., :30].clone(), x.grad[..., 30:].abs().max().item()))
    assert grads[0][0] == pytest.approx(grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    assert grads[0][2] == grads[1][2] == 0.0


def test_a_label_covering_most_of_the_annotation_is_named_as_a_likely_ignore_label(caplog):
    from unetkit.transforms import WeightMap

    labels = np.zeros((1, 40, 44), np.int64)
    labels[0, 2:6, 2:6], labels[0, 10:14, 2:6] = 1, 2
    labels[0, 20:, :] = 7  # one "object" larger than all the others together
    with caplog.at_level("WARNING"):
        WeightMap()(labels)
    assert "label 7 covers" in caplog.text and "--ignore-label 7" in caplog.text


@pytest.mark.parametrize("classes", [2, 3])
def test_scrambled_ignored_logits_change_neither_loss_nor_gradients_through_the_recipe_targets(classes):
    """The recipes' own chain with an ignore label: WeightMapd and make_target (InstanceToSemanticd for two
    classes, the default InstanceToThreeClassd for three) read the same ignore value; logits scrambled where the
    label is that value leave the loss and every gradient outside it as they were, and give no gradient inside."""
    from monai.transforms import Compose, ConcatItemsd

    from unetkit.transforms import InstanceToSemanticd, InstanceToThreeClassd, WeightMapd

    ignore = 65535
    labels = np.zeros((1, 48, 52), np.int64)
    labels[0, 5:15, 5:15], labels[0, 15:27, 8:20], labels[0, 30:44, 4:16] = 1, 2, 3  # 1 and 2 touch
    labels[0, 8:40, 30:] = ignore
    target = InstanceToThreeClassd("label", boundary=2, ignore_value=ignore) if classes == 3 else \
        InstanceToSemanticd("label", ignore_value=ignore)
    chain = Compose([WeightMapd("label", weight_key="weight", ignore_value=ignore), target,
                     ConcatItemsd(["label", "weight"], name="label")])
    packed = torch.as_tensor(np.asarray(chain({"label": labels})["label"], np.float32))[None]
    assert packed.shape == (1, 2, 48, 52) and int(packed[0, 0].max()) == classes - 1
    ignored = torch.as_tensor(labels[0] == ignore)
    assert (packed[0, 1][ignored] == 0).all() and (packed[0, 1][~ignored] > 0).all()

    logits = torch.randn(1, classes, 48, 52, generator=torch.Generator().manual_seed(0))
    scrambled = torch.where(ignored, torch.randn(logits.shape, generator=torch.Generator().manual_seed(1)) * 100,
                            logits)
    results = []
    for x in (logits, scrambled):
        x = x.clone().requires_grad_(True)
        loss = WeightMapCrossEntropyLoss()(x, packed)
        loss.backward()
        results.append((loss.detach(), x.grad.clone()))
    (loss_a, grad_a), (loss_b, grad_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad_a, grad_b, rtol=0, atol=1e-9)  # outside: equal; inside: both zero
    assert grad_a[..., ignored].abs().max() == 0 and grad_a[..., ~ignored].abs().max() > 0
