"""The stacked GRU kernel against autograd and ``nn.GRU``; its tanh against ``torch.tanh``."""

import pytest
import torch

from boinc_app.gru_layer import FastTanh, StackedGRULayer, split_weight_grad, stacked_weights, tanh_


def random_layer(K, I, H, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(K, 3 * H, I), (K, 3 * H, H), (K, 3 * H), (K, 3 * H)]
    return [(0.5 * torch.randn(*s, generator=generator, dtype=dtype)).requires_grad_(True) for s in shapes]


def test_gradients_pass_gradcheck_in_double_precision():
    L, K, I, H, B = 4, 2, 2, 3, 3
    x = torch.randn(L, K, I, B, dtype=torch.float64, requires_grad=True)
    weights = random_layer(K, I, H, torch.float64)
    assert torch.autograd.gradcheck(StackedGRULayer.apply, (x, *weights), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("I", [11, 12])
def test_outputs_and_gradients_match_nn_gru(I):
    L, K, H, B = 9, 3, 12, 5
    x = torch.randn(L, K, I, B, requires_grad=True)
    weights = random_layer(K, I, H)
    out = StackedGRULayer.apply(x, *weights)
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    for k in range(K):
        gru = torch.nn.GRU(I, H)
        with torch.no_grad():
            for param, value in zip((gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0), weights):
                param.copy_(value[k])
        xk = x[:, k].detach().permute(0, 2, 1).clone().requires_grad_(True)  # [L, B, I]
        reference, _ = gru(xk)
        (reference * upstream[:, k].permute(0, 2, 1)).sum().backward()
        torch.testing.assert_close(out[:, k].permute(0, 2, 1), reference, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(x.grad[:, k].permute(0, 2, 1), xk.grad, atol=1e-5, rtol=1e-4)
        ours = [w.grad[k] for w in weights]
        theirs = [gru.weight_ih_l0.grad, gru.weight_hh_l0.grad, gru.bias_ih_l0.grad, gru.bias_hh_l0.grad]
        for mine, expected in zip(ours, theirs):
            torch.testing.assert_close(mine, expected, atol=1e-5, rtol=1e-4)


def test_stacked_weights_and_their_gradient_split_round_trip():
    K, I, H = 2, 4, 3
    weights = [w.detach() for w in random_layer(K, I, H)]
    W = stacked_weights(*weights)
    assert W.shape == (K, 4 * H, I + H + 1)
    assert torch.count_nonzero(W[:, 2 * H : 3 * H, I : I + H]) == 0  # n's input rows see no h
    assert torch.count_nonzero(W[:, 3 * H :, :I]) == 0  # n's recurrent rows see no x
    # the gradient of a sum of weights * G through the stacking is G split back
    G = torch.randn(K, 4 * H, I + H + 1)
    w = [t.clone().requires_grad_(True) for t in weights]
    (stacked_weights(*w) * G).sum().backward()
    for mine, expected in zip(split_weight_grad(G, I, H), (t.grad for t in w)):
        torch.testing.assert_close(mine, expected)


def test_tanh_through_sigmoid_stays_within_float32_rounding_of_torch_tanh():
    x = torch.cat([torch.linspace(-30, 30, 100_001), torch.tensor([0.0, 1e-30, -1e-8, 1e-4])])
    assert (tanh_(x.clone()) - torch.tanh(x)).abs().max() < 2e-7
    y = x.clone().requires_grad_(True)
    FastTanh.apply(y).sum().backward()
    torch.testing.assert_close(y.grad, 1 - torch.tanh(x) ** 2, atol=5e-7, rtol=0)


def test_a_nan_in_one_sequence_stays_in_that_sequence():
    L, K, I, H, B = 3, 1, 2, 3, 2
    x = torch.zeros(L, K, I, B)
    x[1, 0, 0, 0] = float("nan")
    out = StackedGRULayer.apply(x, *[w.detach() for w in random_layer(K, I, H)])
    assert torch.isnan(out[1:, 0, :, 0]).all() and torch.isfinite(out[:, 0, :, 1]).all()

