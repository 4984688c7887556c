"""Which DS3 network shapes give the seed's 136,846 parameters?

The seed describes DS3's networks as "64-wide, 4 layer deep LSTMs followed by 2 linear layers, or
136846 parameters"; ours (spec §4, one-hot input A = 4, head ``Linear(64, 64)`` → ReLU →
``Linear(64, B)``, B = 6) has 122,310. This enumerates the natural readings of that sentence and
prints every (input width, head width, output width) that reaches 136,846 exactly, so the choice
of keeping ours rests on a search, not a guess:

- PyTorch's LSTM (two bias vectors per gate, as libtorch's, which MLC@Home used) or one bias;
- the input one-hot over A symbols, or an ``Embedding(A, E)`` before the LSTM, or the one-hot
  input beside the previous output symbol (width A + B);
- the head ``Linear(64, M)`` → ``Linear(M, B)`` for any M, or M = 64.

    python bench/ds3_shape.py                 # alphabets up to 16 symbols
    python bench/ds3_shape.py --max-alphabet 64
"""

import click

SEED_COUNT = 136_846
HIDDEN, LAYERS = 64, 4


def lstm_count(inputs, biases=2, hidden=HIDDEN, layers=LAYERS):
    first = 4 * hidden * (inputs + hidden + biases)
    return first + (layers - 1) * 4 * hidden * (2 * hidden + biases)


def head_count(width, outputs, hidden=HIDDEN):
    return hidden * width + width + width * outputs + outputs


def readings(max_alphabet, head_widths):
    """Every (reading, A, B, extra, M, count) with count == SEED_COUNT; extra = E for embeddings."""
    found = []
    for biases in (2, 1):
        for a in range(2, max_alphabet + 1):
            for b in range(2, max_alphabet + 1):
                for m in head_widths:
                    head = head_count(m, b)
                    candidates = [("one-hot A", lstm_count(a, biases) + head, None),
                                  ("one-hot A + previous output B", lstm_count(a + b, biases) + head, None)]
                    candidates += [("Embedding(A, E)", a * e + lstm_count(e, biases) + head, e) for e in range(1, 129)]
                    for label, count, extra in candidates:
                        if count == SEED_COUNT:
                            found.append((f"{label}, {biases} bias{'es' if biases == 2 else ''}", a, b, extra, m))
    return found


@click.command()
@click.option("--max-alphabet", default=16, type=int, help="largest input/output alphabet tried")
@click.option("--any-head-width", is_flag=True, help="try every head width 1..256, not only 64")
def main(max_alphabet, any_head_width):
    ours = lstm_count(4) + head_count(64, 6)
    click.echo(f"ours (A=4, B=6, M=64, 2 biases): {ours:,}; the seed: {SEED_COUNT:,}")
    widths = range(1, 257) if any_head_width else (64,)
    found = readings(max_alphabet, widths)
    click.echo(f"readings with alphabets 2..{max_alphabet}, head width {'1..256' if any_head_width else 64}: {len(found)}")
    for label, a, b, extra, m in found:
        click.echo(f"  {label}: A={a} B={b} M={m}" + (f" E={extra}" if extra else ""))


if __name__ == "__main__":
    main()
