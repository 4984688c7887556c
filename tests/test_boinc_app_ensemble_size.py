"""How many networks the trainer stacks per device."""

from boinc_app.ensemble_size import GPU_MAX_NETWORKS, ensemble_size
from boinc_app.networks import DEVICE_ARCHITECTURE, automaton_architecture


def test_ensemble_size_per_device():
    lstm = automaton_architecture(4, 6)
    assert ensemble_size("cpu", DEVICE_ARCHITECTURE, 50) == 64
    assert ensemble_size("cpu", lstm, 50) == 8
    # a GPU takes as many networks as 60 % of its free memory holds, within bounds
    assert ensemble_size("cuda:0", DEVICE_ARCHITECTURE, 50, free_bytes=80 << 30) == GPU_MAX_NETWORKS
    small = ensemble_size("cuda:0", lstm, 50, free_bytes=8 << 30)
    assert 100 < small < ensemble_size("cuda:0", DEVICE_ARCHITECTURE, 50, free_bytes=8 << 30)
    assert ensemble_size("cuda:0", lstm, 50, free_bytes=1) == 1
