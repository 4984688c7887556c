"""The analytic FLOP count against hand counts, and its matrix products against torch's counter."""

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from boinc_app import ensemble, flops
from boinc_app.networks import DEVICE_ARCHITECTURE, Architecture, build_network
from boinc_app.training import NetworkState
from workgen.specs import make_spec, with_data

TINY_GRU = Architecture("gru", 2, 3, 1, (4, 1), "tanh")
TINY_LSTM = Architecture("lstm", 2, 3, 1, (4, 1), "relu")


def test_tiny_gru_step_by_hand():
    # GRU, input 2, hidden 3: input projection 9x2 multiply-adds (36) + 9 biases; recurrent
    # projection 9x3 multiply-adds (54) + 9 biases; gates: r,z add+sigmoid 2x6, n: r*g, add,
    # tanh 3x3, h = n + z*(h - n) 3x3 -> 12 + 9 + 9 = 30.
    gru = 36 + 9 + 54 + 9 + 30
    # head 3 -> 4: 12 multiply-adds (24) + 4 biases + 4 tanh; 4 -> 1: 4 multiply-adds (8) + 1 bias.
    head = 24 + 4 + 4 + 8 + 1
    assert flops.recurrent_layer_flops("gru", 2, 3) == gru == 138
    assert flops.head_flops(3, (4, 1)) == head == 41
    assert flops.forward_step_flops(TINY_GRU) == 179


def test_tiny_lstm_step_by_hand():
    # LSTM, input 2, hidden 3: input projection 12x2 multiply-adds (48) + 12 biases; recurrent
    # 12x3 multiply-adds (72) + 12 adds; gates: sigmoid i,f,o 9, tanh g 3, c = f*c + i*g 9,
    # tanh(c) 3, h = o*tanh(c) 3 -> 27.
    assert flops.recurrent_layer_flops("lstm", 2, 3) == 48 + 12 + 72 + 12 + 27 == 171
    assert flops.forward_step_flops(TINY_LSTM) == 171 + 41


def test_ds1_network_step_by_hand():
    # GRU 11 -> 12, 4 layers: layer 0: 6*11*12 + 6*144 + 16*12 = 1848; layers 1-3: 1920 each;
    # head 12 -> 24 -> 8 -> 8 -> 8 (tanh between): 600 + 24, 392 + 8, 136 + 8, 136.
    assert flops.forward_step_flops(DEVICE_ARCHITECTURE) == 1848 + 3 * 1920 + 624 + 400 + 144 + 136 == 8912


@pytest.mark.parametrize("arch", [TINY_GRU, TINY_LSTM, DEVICE_ARCHITECTURE], ids=lambda a: f"{a.cell}{a.num_layers}")
def test_matrix_products_agree_with_torchs_flop_counter(arch):
    """torch counts only the matrix products, 2 per multiply-add: our count minus the bias, gate
    and activation terms must match it on the trainer's own stacked forward pass, plus, for the
    GRU kernel, the zero blocks and bias column of its one fused matrix per step
    (``boinc_app.gru_layer``: ``[4H, I+H+1]`` holds ``3H(I+H)`` weights, ``HI + H^2`` zeros and
    ``4H`` biases). The meta device runs the stacked path for both cells (on a CPU the LSTM runs
    through PyTorch's fused kernel, which the counter cannot see)."""
    length = 7
    params = ensemble.stack_state_dicts([{k: v.numpy() for k, v in build_network(arch, 1).state_dict().items()}], "meta")
    with FlopCounterMode(display=False) as counter:
        ensemble.forward(arch, params, torch.zeros(1, 1, length, arch.input_size, device="meta"))
    H = arch.hidden_size
    elementwise = {"gru": 16 * H, "lstm": 17 * H}[arch.cell] * arch.num_layers  # biases + gates
    widths = (H,) + arch.head
    head_extra = sum(widths[1:]) + sum(widths[1:-1])  # biases + activations
    fused_extra = 0
    if arch.cell == "gru":
        inputs = [arch.input_size] + [H] * (arch.num_layers - 1)
        fused_extra = sum(2 * (H * I + H * H + 4 * H) for I in inputs)
    useful = flops.forward_step_flops(arch) - elementwise - head_extra
    assert counter.get_total_flops() == length * (useful + fused_extra)


def tiny_spec(**recipe):
    spec = with_data(make_spec("DS1", "SingleDirectMachine", networks=2, max_epochs=3), train_size=10, validation_size=4, length=5)
    return dataclasses.replace(spec, architecture=TINY_GRU, recipe=dataclasses.replace(spec.recipe, **recipe))


def test_network_epoch_is_three_training_passes_plus_one_validation_pass():
    spec = tiny_spec(curriculum_epochs=0)
    assert flops.network_epoch_flops(spec, 0) == 3 * 10 * 5 * 179 + 4 * 5 * 179 == 30430
    curriculum = tiny_spec(curriculum_epochs=2, curriculum_start_length=2)
    # training lengths 2, 3, 5 over epochs 0, 1, 2; validation always at full length 5
    assert [flops.network_epoch_flops(curriculum, e) for e in range(3)] == [
        3 * 10 * length * 179 + 4 * 5 * 179 for length in (2, 3, 5)
    ]


def test_trained_flops_count_this_workunits_network_epochs():
    spec = tiny_spec()
    one = NetworkState("a", 1, 1, {}, {}, {}, epochs=3, start_epoch=1)  # a continuation: epochs 1, 2
    two = NetworkState("b", 2, 2, {}, {}, {}, epochs=1)
    assert flops.trained_flops(spec, [one, two]) == 3 * 30430
    assert flops.workunit_flops(spec) == 2 * spec.epoch_budget * 30430
