import pytest
import torch

from boinc_app import ensemble
from boinc_app.networks import (
    DEVICE_ARCHITECTURE,
    DEVICE_NET_PARAMETERS,
    automaton_architecture,
    build_network,
    expected_shapes,
    parameter_count,
)


def test_device_network_has_exactly_4364_parameters():
    assert DEVICE_NET_PARAMETERS == 4364
    assert parameter_count(build_network(DEVICE_ARCHITECTURE)) == 4364


def test_device_network_shape_is_the_spec_s():
    shapes = expected_shapes(DEVICE_ARCHITECTURE)
    assert shapes["rnn.weight_ih_l0"] == (36, 11)
    assert shapes["rnn.weight_hh_l3"] == (36, 12)
    assert [shapes[f"head.{i}.weight"] for i in range(4)] == [(24, 12), (8, 24), (8, 8), (8, 8)]
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 4364


def test_automaton_network_parameter_count_for_default_alphabets():
    # LSTM(4, 64, 4 layers) + Linear(64, 64) + Linear(64, 6)
    lstm = 4 * 64 * (4 + 64 + 2) + 3 * 4 * 64 * (64 + 64 + 2)
    assert parameter_count(build_network(automaton_architecture(4, 6))) == lstm + 64 * 65 + 6 * 65


def test_initialisation_is_drawn_from_the_seed_only():
    a, b, c = (build_network(DEVICE_ARCHITECTURE, seed).state_dict() for seed in (5, 5, 6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.0.weight"], c["head.0.weight"])


def test_seeded_build_does_not_disturb_the_global_generator():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_network(DEVICE_ARCHITECTURE, 1)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_activation_is_refused():
    bad = DEVICE_ARCHITECTURE.__class__(**{**DEVICE_ARCHITECTURE.__dict__, "activation": "swish"})
    with pytest.raises(ValueError, match="swish"):
        build_network(bad)


@pytest.mark.parametrize("arch", [DEVICE_ARCHITECTURE, automaton_architecture(4, 6)], ids=["gru", "lstm"])
def test_ensemble_forward_equals_the_reference_modules(arch):
    modules = [build_network(arch, seed) for seed in (1, 2, 3)]
    params = ensemble.stack_state_dicts([m.state_dict() for m in modules])
    inputs = torch.rand(3, 5, 17, arch.input_size)
    with torch.no_grad():
        stacked = ensemble.forward(arch, params, inputs)
        reference = torch.stack([m(inputs[k]) for k, m in enumerate(modules)])
    torch.testing.assert_close(stacked, reference, rtol=1e-5, atol=1e-6)


def test_both_lstm_paths_compute_the_same_hidden_states():
    """The stacked LSTM cell (the GPU path) against the fused per-network kernel (the CPU path)."""
    arch = automaton_architecture(4, 6)
    params = ensemble.stack_state_dicts([build_network(arch, seed).state_dict() for seed in (1, 2)])
    inputs = torch.rand(2, 5, 13, arch.input_size)
    with torch.no_grad():
        stacked = ensemble._lstm_stacked(arch, params, inputs)
        fused = ensemble._lstm_per_network(arch, params, inputs)
    assert stacked.shape == (2, arch.hidden_size, 13, 5)
    torch.testing.assert_close(stacked, fused, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", [DEVICE_ARCHITECTURE, automaton_architecture(4, 6)], ids=["gru", "lstm"])
def test_ensemble_training_follows_each_network_s_own_trajectory(arch):
    """Stacked loss, per-network clipping and StackedAdam == torch.optim.Adam per network."""
    modules = [build_network(arch, seed) for seed in (1, 2)]
    params = ensemble.stack_state_dicts([m.state_dict() for m in modules])
    optimizer = ensemble.StackedAdam(params, lr=3e-3)
    references = [torch.optim.Adam(m.parameters(), lr=3e-3) for m in modules]
    generator = torch.Generator().manual_seed(0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _ in range(10):
        inputs = torch.rand(2, 8, 20, arch.input_size, generator=generator) * 3
        targets = (torch.rand(2, 8, 20, arch.head[-1], generator=generator) > 0.5).float()
        loss = bce(ensemble.forward(arch, params, inputs), targets, reduction="none").flatten(1).mean(1)
        loss.sum().backward()
        norms = ensemble.clip_grad_norms(params, 1.0)
        optimizer.step()
        for p in params.values():
            p.grad = None
        for k, (module, reference) in enumerate(zip(modules, references)):
            reference.zero_grad()
            bce(module(inputs[k]), targets[k]).backward()
            norm = torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            torch.testing.assert_close(norms[k], norm, rtol=1e-4, atol=1e-6)
            reference.step()
    for k, module in enumerate(modules):
        mine = ensemble.unstack(params, k)
        for key, value in module.state_dict().items():
            torch.testing.assert_close(mine[key], value, rtol=1e-4, atol=2e-5)
