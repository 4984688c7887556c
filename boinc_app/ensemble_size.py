"""How many networks the trainer stacks into one ensemble, chosen per device.

A workunit may carry more networks than are best trained at once. On a CPU, the stacked GRU
(``boinc_app.gru_layer``) amortises per-operation overhead over K networks, but past a point its
per-step buffers (``K x 4H x B`` floats, plus the whole sequence kept for the backward pass) fall
out of the caches and each network gets slower again; ``bench/train_speed.py`` measures the curve
and the constants below come from it. On a GPU, one ensemble should fill the device: every network
of the workunit at once, up to a memory budget.
"""

CPU_GRU_NETWORKS = 64
CPU_LSTM_NETWORKS = 8
GPU_MAX_NETWORKS = 8192
GPU_MEMORY_SHARE = 0.6
# float32 values kept per network, per layer, time step and sequence of a batch of 32 during a
# training step, in units of the hidden size: gates, states and their gradients (~9 H). Measured on
# an H100: 5.2 MB per DS1 network at L = 100 (torch.cuda.max_memory_allocated / K, K = 256..8192,
# docs/speed.md); this gives 5.5 MB
VALUES_PER_HIDDEN_UNIT = 9
BATCH = 32


def ensemble_size(device, arch, length, free_bytes=None):
    """Networks per ensemble for ``arch`` at sequence ``length`` on ``device`` ("cpu", "cuda:0")."""
    if not str(device).startswith("cuda"):
        return CPU_GRU_NETWORKS if arch.cell == "gru" else CPU_LSTM_NETWORKS
    if free_bytes is None:
        import torch

        free_bytes, _ = torch.cuda.mem_get_info(device)
    per_network = 4 * BATCH * length * arch.num_layers * arch.hidden_size * VALUES_PER_HIDDEN_UNIT
    return max(1, min(GPU_MAX_NETWORKS, int(free_bytes * GPU_MEMORY_SHARE // per_network)))
