"""Many small recurrent networks trained at once with stacked parameters.

A DS1 network has 4,364 parameters; trained alone with ``nn.GRU`` a CPU spends nearly all its time
in per-operation overhead. Here every parameter of K networks is one tensor with a leading K
dimension, named by the reference module's ``state_dict`` key (``rnn.weight_hh_l0`` has shape
``[K, 36, 12]``), and each step is a batched matmul over the K networks. Network k computes exactly
what the reference ``nn.GRU``/``nn.LSTM`` module computes (same gate order and equations), so its
weights load into ``boinc_app.networks.RecurrentNet`` unchanged.

Layout inside the forward pass is time-major per network (``[K, L, B, width]``): the input
projection of a whole layer is one ``baddbmm`` and each time step reads a contiguous-in-time slice
from ``unbind``, whose backward is a single ``stack`` (indexing per step would allocate a full-size
gradient per step).

Gradients are per network: the loss is the sum of per-network losses, clipping uses each network's
own global norm, and Adam is element-wise with a per-network step count and learning rate, so each
network follows the trajectory it would follow alone (up to floating-point rounding).
"""

import torch

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


def _gru_layer(params, layer, seq, hidden_size):
    """One GRU layer over ``seq [K, L, B, in]``; returns ``[K, L, B, H]``."""
    K, L, B, _ = seq.shape
    H = hidden_size
    w_ih, w_hh = params[f"rnn.weight_ih_l{layer}"], params[f"rnn.weight_hh_l{layer}"]
    b_ih, b_hh = params[f"rnn.bias_ih_l{layer}"], params[f"rnn.bias_hh_l{layer}"]
    gates_in = torch.baddbmm(b_ih.unsqueeze(1), seq.reshape(K, L * B, -1), w_ih.transpose(1, 2))
    steps_in = gates_in.view(K, L, B, 3 * H).unbind(1)
    w_hh_t, b_hh = w_hh.transpose(1, 2), b_hh.unsqueeze(1)
    h = seq.new_zeros(K, B, H)
    outputs = []
    for g_in in steps_in:
        g_h = torch.baddbmm(b_hh, h, w_hh_t)
        rz = torch.sigmoid(g_in[..., : 2 * H] + g_h[..., : 2 * H])
        r, z = rz[..., :H], rz[..., H:]
        n = torch.tanh(g_in[..., 2 * H :] + r * g_h[..., 2 * H :])
        h = n + z * (h - n)
        outputs.append(h)
    return torch.stack(outputs, 1)


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


_LAYERS = {"gru": _gru_layer, "lstm": _lstm_layer}


def forward(arch, params, inputs):
    """Logits ``[K, B, L, out]`` for per-network inputs ``[K, B, L, in]``."""
    seq = inputs.transpose(1, 2)
    K, L, B, _ = seq.shape
    for layer in range(arch.num_layers):
        seq = _LAYERS[arch.cell](params, layer, seq, arch.hidden_size)
    hidden = seq.reshape(K, L * B, arch.hidden_size)
    act = ACTIVATIONS[arch.activation]
    for i in range(len(arch.head)):
        weight, bias = params[f"head.{i}.weight"], params[f"head.{i}.bias"]
        hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))
        if i < len(arch.head) - 1:
            hidden = act(hidden)
    return hidden.view(K, L, B, -1).transpose(1, 2)


def clip_grad_norms(params, max_norm):
    """Scale each network's gradients so its global norm is at most ``max_norm`` (as
    ``torch.nn.utils.clip_grad_norm_`` does for one network). Returns the norms ``[K]``."""
    grads = [p.grad for p in params.values()]
    squares = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0)
    norms = squares.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
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
