"""Near-miss triggers (spec §3): trigger-like writes with 1-3 bits flipped, identical for DS1/DS2."""

import numpy as np

from machines import get_machine
from machines.devices import TRIGGER, WRITE, trigger_completions
from machines.sequences import draw_commands_and_data, generate


def near_miss_windows(commands, data):
    """Per sequence: the smallest non-zero bit distance of a 3-WRITE window to the trigger."""
    best = np.full(commands.shape[0], 99)
    for t in range(commands.shape[1] - 2):
        writes = (commands[:, t : t + 3] == WRITE).all(1)
        distance = sum(np.unpackbits((data[:, t + k] ^ byte)[:, None].astype(np.uint8), axis=1).sum(1) for k, byte in enumerate(TRIGGER))
        best = np.where(writes & (distance > 0) & (distance < best), distance, best)
    return best


def test_zero_probability_keeps_the_plain_stream():
    plain = draw_commands_and_data(200, 50, 9)
    zero = draw_commands_and_data(200, 50, 9, 0.0)
    assert all(np.array_equal(a, b) for a, b in zip(plain, zero))


def test_near_misses_are_planted_in_about_the_requested_share_and_differ_by_one_to_three_bits():
    commands, data = draw_commands_and_data(2000, 50, 9, 0.5)
    close = near_miss_windows(commands, data) <= 3
    by_chance = near_miss_windows(*draw_commands_and_data(2000, 50, 9)) <= 3
    assert 0.4 < close.mean() - by_chance.mean() < 0.55
    assert by_chance.mean() < 0.01


def test_real_triggers_survive_near_misses():
    plain = trigger_completions(*(a.astype(np.int64) for a in draw_commands_and_data(1000, 50, 4)))
    mixed = trigger_completions(*(a.astype(np.int64) for a in draw_commands_and_data(1000, 50, 4, 0.5)))
    assert (plain.any(1) <= mixed.any(1)).all()


def test_ds1_and_ds2_see_identical_inputs_with_near_misses():
    ds1 = generate(get_machine("ParityMachine"), 300, 50, 2, 0.5)
    ds2 = generate(get_machine("ParityModified"), 300, 50, 2, 0.5)
    assert np.array_equal(ds1.inputs, ds2.inputs)
    differs = (ds1.targets != ds2.targets).any(-1)
    assert np.array_equal(differs, ds2.post_trigger)
