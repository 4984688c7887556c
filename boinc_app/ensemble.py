"""Many small recurrent networks trained at once with stacked parameters.

A DS1 network has 4,364 parameters; trained alone with ``nn.GRU`` a CPU spends nearly all its time
in per-operation overhead. Here every parameter of K networks is one tensor with a leading K
dimension, named by the reference module's ``state_dict`` key (``rnn.weight_hh_l0`` has shape
``[K, 36, 12]``), and each step is a batched matmul over the K networks. Network k computes exactly
what the reference ``nn.GRU``/``nn.LSTM`` module computes (same gate order and equations), so its
weights load into ``boinc_app.networks.RecurrentNet`` unchanged.

Recurrent stacks: GRU networks (DS1/DS2) run through ``boinc_app.gru_layer``, a time-major
kernel with a hand-written backward pass; LSTM networks (DS3) run, on a CPU, one network at a time
through PyTorch's fused LSTM kernel, and on a GPU as a stacked cell. The head is one ``baddbmm``
per layer over all steps, in ``[K, C, L*B]`` layout. ``bench/train_speed.py`` measures each path.

Gradients are per network: the loss is the sum of per-network losses, clipping uses each network's
own global norm, and Adam is element-wise with a per-network step count and learning rate, so each
network follows the trajectory it would follow alone (up to floating-point rounding).
"""

import torch

from boinc_app.gru_layer import FastTanh, StackedGRULayer
from boinc_app.networks import ACTIVATIONS


def stack_state_dicts(state_dicts, device="cpu"):
    """``{key: tensor [K, ...]}`` (leaf tensors requiring grad) from K state dicts."""
    keys = list(state_dicts[0])
    return {
        key: torch.stack([torch.as_tensor(sd[key], dtype=torch.float32) for sd in state_dicts])
        .to(device)
        .requires_grad_(True)
        for key in keys
    }


def unstack(params, k):
    """Network ``k``'s state dict (CPU tensors, detached)."""
    return {key: value[k].detach().cpu().clone() for key, value in params.items()}


def _lstm_layer(params, layer, seq, hidden_size):
    """One LSTM layer (gate order i, f, g, o as in ``nn.LSTM``); returns ``[K, L, B, H]``."""
    K, L, B, _ = seq.shape
    H = hidden_size
    w_ih, w_hh = params[f"rnn.weight_ih_l{layer}"], params[f"rnn.weight_hh_l{layer}"]
    b_ih, b_hh = params[f"rnn.bias_ih_l{layer}"], params[f"rnn.bias_hh_l{layer}"]
    bias = (b_ih + b_hh).unsqueeze(1)
    gates_in = torch.baddbmm(bias, seq.reshape(K, L * B, -1), w_ih.transpose(1, 2))
    steps_in = gates_in.view(K, L, B, 4 * H).unbind(1)
    w_hh_t = w_hh.transpose(1, 2)
    h = seq.new_zeros(K, B, H)
    c = seq.new_zeros(K, B, H)
    outputs = []
    for g_in in steps_in:
        gates = torch.baddbmm(g_in, h, w_hh_t)
        ifo = torch.sigmoid(gates[..., [*range(0, 2 * H), *range(3 * H, 4 * H)]])
        i, f, o = ifo[..., :H], ifo[..., H : 2 * H], ifo[..., 2 * H :]
        c = f * c + i * torch.tanh(gates[..., 2 * H : 3 * H])
        h = o * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1)


def forward(arch, params, inputs):
    """Logits ``[K, B, L, out]`` (a strided view) for per-network inputs ``[K, B, L, in]``."""
    if arch.cell == "gru":
        hidden = _gru_stack(arch, params, inputs)
    else:
        hidden = _lstm_stack(arch, params, inputs)
    K, _, L, B = hidden.shape
    hidden = hidden.view(K, arch.hidden_size, L * B)
    for i in range(len(arch.head)):
        weight, bias = params[f"head.{i}.weight"], params[f"head.{i}.bias"]
        hidden = torch.baddbmm(bias.unsqueeze(2), weight, hidden)
        if i < len(arch.head) - 1:
            hidden = FastTanh.apply(hidden) if arch.activation == "tanh" else ACTIVATIONS[arch.activation](hidden)
    return hidden.view(K, -1, L, B).permute(0, 3, 2, 1)


def _gru_stack(arch, params, inputs):
    """Hidden states ``[K, H, L, B]`` of the top layer (``boinc_app.gru_layer``, time-major)."""
    seq = inputs.permute(2, 0, 3, 1).contiguous()  # [L, K, in, B]
    for layer in range(arch.num_layers):
        weights = (params[f"rnn.{name}_l{layer}"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        seq = StackedGRULayer.apply(seq, *weights)
    return seq.permute(1, 2, 0, 3).contiguous()


def _lstm_stack(arch, params, inputs):
    """Hidden states ``[K, H, L, B]`` of the top layer.

    On a CPU, each network runs through PyTorch's fused LSTM kernel (``torch.lstm``, what
    ``nn.LSTM`` calls): with 64 hidden units its matmuls are big enough to run near the matmul
    ceiling, and the stacked form was slower (``bench/train_speed.py --dataset DS3``). On a GPU
    the stacked form fills the device with all K networks at once.
    """
    if inputs.device.type == "cpu":
        return _lstm_per_network(arch, params, inputs)
    return _lstm_stacked(arch, params, inputs)


def _lstm_stacked(arch, params, inputs):
    seq = inputs.transpose(1, 2)
    for layer in range(arch.num_layers):
        seq = _lstm_layer(params, layer, seq, arch.hidden_size)
    return seq.permute(0, 3, 1, 2).contiguous()


def _lstm_per_network(arch, params, inputs):
    K, B = inputs.shape[:2]
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    zeros = inputs.new_zeros(arch.num_layers, B, arch.hidden_size)
    outputs = []
    for k in range(K):
        weights = [params[f"rnn.{name}_l{layer}"][k] for layer in range(arch.num_layers) for name in names]
        out, _, _ = torch.lstm(inputs[k], (zeros, zeros), weights, True, arch.num_layers, 0.0, torch.is_grad_enabled(), False, True)
        outputs.append(out)
    return torch.stack(outputs).permute(0, 3, 2, 1).contiguous()


def clip_grad_norms(params, max_norm, accumulate=torch.float32):
    """Scale each network's gradients so its global norm is at most ``max_norm`` (as
    ``torch.nn.utils.clip_grad_norm_`` does for one network). Returns the norms ``[K]``.

    ``accumulate``: the dtype the squares are summed in. In float32 the sum's rounding depends on
    how the reduction is split, which depends on K and the thread count, and a plateau amplifies
    that into a different trajectory (1.4e-3 relative in a SingleDirect network's epoch-1 loss,
    trained alone vs in an ensemble of 2); in float64 the scale, rounded back to float32, came out
    bitwise the same for every K and thread count measured (docs/spot-check.md §1a).
    """
    grads = [p.grad for p in params.values()]
    squares = torch.stack([g.to(accumulate).pow(2).flatten(1).sum(1) for g in grads]).sum(0)
    norms = squares.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0).to(grads[0].dtype)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms


class StackedAdam:
    """Adam (as ``torch.optim.Adam``, no weight decay) with per-network steps and learning rates.

    State tensors have the parameters' shapes; ``step`` and ``lr`` are ``[K]``.
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, exp_avg=None, exp_avg_sq=None, step=None):
        self.params = params
        self.betas = betas
        self.eps = eps
        K = next(iter(params.values())).shape[0]
        device = next(iter(params.values())).device
        self.lr = torch.as_tensor(lr, dtype=torch.float64, device=device).expand(K).clone()
        self.exp_avg = exp_avg or {key: torch.zeros_like(p) for key, p in params.items()}
        self.exp_avg_sq = exp_avg_sq or {key: torch.zeros_like(p) for key, p in params.items()}
        self.step_count = (
            torch.zeros(K, dtype=torch.int64, device=device) if step is None else step.to(device)
        )

    @torch.no_grad()
    def step(self):
        beta1, beta2 = self.betas
        self.step_count += 1
        t = self.step_count.to(torch.float64)
        step_size = (self.lr / (1 - beta1**t)).to(torch.float32)
        bias2_sqrt = (1 - beta2**t).sqrt().to(torch.float32)
        for key, p in self.params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            m, v = self.exp_avg[key], self.exp_avg_sq[key]
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v.sqrt() / bias2_sqrt.view(shape)).add_(self.eps)
            p.sub_(step_size.view(shape) * m / denom)
