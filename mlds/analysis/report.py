"""Studies as Markdown and JSON: Table 2 (``mlds.analysis.table2``) beside MLDS's numbers, and
the tasks study (``mlds.analysis.tasks``).

Why separate: the study's numbers are computed once and kept as JSON (every split's accuracy and
AUC, the sources' md5); the Markdown is a view of them that can be redrawn without re-running.
"""

import json
import os

from mlds.analysis.table2 import best_of

# MLDS's Table 2 (seed slides): accuracy range over its six classifiers, N = 1000 per class
MLDS_TABLE2 = {"SingleDirect": "81–100 %", "SingleInvert": "48–55 %", "SimpleXOR": "85–99 %", "Parity": "55–71 %", "EightBit": "78–99 %"}


def percent(scores):
    return f"{100 * scores['mean']:.1f} ± {100 * scores['std']:.1f}"


def markdown(study):
    lines = ["# Table 2: DS1 vs DS2 from the weights, with controls", ""]
    lines += _sources(study) + [""] + _settings(study) + [""] + _summary(study)
    lines += [""] + [f"Skipped: {note}." for note in study.get("skipped", [])]
    for pair in study["pairs"]:
        lines += [""] + _pair_detail(pair)
    return "\n".join(lines) + "\n"


def _sources(study):
    lines = ["Sources:", ""]
    lines += [f"- `{s['file']}` ({s['dataset']}, SPEC_VERSION {s['spec_version']}), md5 `{s['md5']}`" for s in study["sources"]]
    return lines


def _settings(study):
    config = study["config"]
    return [
        f"Accuracy in % on the test folds of {config['seeds']} random {100 - round(100 * config['test_size'])}/"
        f"{round(100 * config['test_size'])} splits (mean ± std; converged networks only). Each cell of the summary is the "
        f"best of the classifiers ({', '.join(config['classifiers'])}), so `shuffled` and `halves` (both at chance by "
        "construction) show how high the best of them reaches by luck. `metadata`: epochs, final losses, restarts; "
        "`norm`: the weight norm alone. `equal training`: the best `<features>@e` row, the weights after "
        "snapshot epoch e, at the last snapshot epoch every network of the pair reached (else the best epoch, with "
        "the count of networks that trained that long), beside `norm@e`, their norm alone, and `metadata@e`, their "
        "losses and validation accuracy after epoch e (progress at equal epochs), and `halves@e`, the null pair there; "
        "`weights − controls @e` is the best weights row there minus the better of `norm@e` and `metadata@e`. "
        "`equal progress`: the same at the first snapshot where each network's validation accuracy had reached the "
        "threshold (`<features>@accT`; `metadata@accT` adds that snapshot's epoch), at the highest threshold with rows. "
        "AUC: ROC AUC of the best weight-only detector (DS2 = trojaned). "
        f"Study time {study['seconds']} s."
    ]


def _summary(study):
    names = [name for name in study["pairs"][0]["rows"] if "@" not in name]
    head = ["machine", "DS1 / DS2 (excluded)", "split", "MLDS"] + names
    head += ["weights − controls", "equal training", "weights − controls @e", "equal progress", "weights − controls @acc", "AUC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pair in study["pairs"]:
        lines.append("| " + " | ".join(_summary_cells(pair, names)) + " |")
    return lines


def _summary_cells(pair, names):
    n, ex, best = pair["networks"], pair["excluded_unconverged"], pair["best_weight_detector"]
    cells = [pair["machine"], f"{n['DS1']} / {n['DS2']} ({ex['DS1']} / {ex['DS2']})", pair["split"], MLDS_TABLE2.get(pair["machine"], "")]
    cells += [percent(best_of(pair["rows"][name])[1]) for name in names]
    cells.append(_margin(best["mean"], pair["rows"], ("metadata", "norm")))
    cells += _equal_training_cells(pair)
    cells += _equal_progress_cells(pair)
    cells.append(f"{best['auc_mean']:.3f} ± {best['auc_std']:.3f} ({best['features']}, {best['classifier']})")
    return cells


def _margin(weights_mean, rows, controls):
    """Best weights accuracy minus the best of the ``controls`` rows present, in points; "" if none."""
    means = [best_of(rows[c])[1]["mean"] for c in controls if c in rows]
    return f"{100 * (weights_mean - max(means)):+.1f}" if means else ""


CONTROLS_AT_EPOCH = ("norm", "metadata")
NULLS_AT_EPOCH = ("halves",)  # shown beside the controls, not subtracted: its best is the chance ceiling


def _weights_rows_at_equal_training(rows):
    return [n for n in rows if "@" in n and n.split("@")[1].isdigit() and n.split("@")[0] not in CONTROLS_AT_EPOCH + NULLS_AT_EPOCH]


def _weights_rows_at_equal_progress(rows):
    return [n for n in rows if "@acc" in n and n.split("@")[0] not in CONTROLS_AT_EPOCH]


def _equal_progress_cells(pair):
    """``[best weights row at the highest accuracy threshold with rows, with its controls, its margin]``."""
    rows = pair["rows"]
    weights = _weights_rows_at_equal_progress(rows)
    if not weights:
        return ["–", ""]
    key = max({n.split("@")[1] for n in weights}, key=lambda k: float(k.removeprefix("acc")))
    name = max((n for n in weights if n.endswith(f"@{key}")), key=lambda n: best_of(rows[n])[1]["mean"])
    info = pair["equal_progress_networks"][key]
    epochs = "; ".join(f"{side} epochs {r[0]}–{r[2]} (median {r[1]:g})" for side, r in info["epochs"].items() if r)
    controls = [f"{c} {percent(best_of(rows[f'{c}@{key}'])[1])}" for c in CONTROLS_AT_EPOCH if f"{c}@{key}" in rows]
    cell = (f"first snapshot at validation accuracy ≥ {float(key.removeprefix('acc')):.0%} ({info['DS1']} / {info['DS2']} "
            f"networks; {epochs}): {name} {percent(best_of(rows[name])[1])} ({'; '.join(controls)})")  # fmt: skip
    return [cell, _margin(best_of(rows[name])[1]["mean"], rows, [f"{c}@{key}" for c in CONTROLS_AT_EPOCH])]


def _summary_epoch(pair):
    """The epoch the summary reads: the last one every network reached, else the best weights row's."""
    rows, counts = pair["rows"], pair["equal_training_networks"]
    epochs = sorted({int(n.split("@")[1]) for n in _weights_rows_at_equal_training(rows)})
    everyone = [e for e in epochs if (counts[str(e)]["DS1"], counts[str(e)]["DS2"]) == (pair["networks"]["DS1"], pair["networks"]["DS2"])]
    if everyone:
        return everyone[-1], True
    best = max(_weights_rows_at_equal_training(rows), key=lambda n: best_of(rows[n])[1]["mean"])
    return int(best.split("@")[1]), False


def _equal_training_cells(pair):
    """``[best weights row at the summary epoch with its controls, its margin over them]``; "–" if none."""
    rows = pair["rows"]
    if not _weights_rows_at_equal_training(rows):
        return ["–", ""]
    epoch, everyone = _summary_epoch(pair)
    names = [n for n in _weights_rows_at_equal_training(rows) if n.endswith(f"@{epoch}")]
    name = max(names, key=lambda n: best_of(rows[n])[1]["mean"])
    mean = best_of(rows[name])[1]["mean"]
    counts = pair["equal_training_networks"][str(epoch)]
    who = "all networks" if everyone else f"{counts['DS1']} / {counts['DS2']} networks"
    controls = [f"{c} {percent(best_of(rows[f'{c}@{epoch}'])[1])}" for c in CONTROLS_AT_EPOCH + NULLS_AT_EPOCH if f"{c}@{epoch}" in rows]
    if f"metadata@{epoch}" not in rows:
        controls.append("losses not kept")
    cell = f"after epoch {epoch} ({who}): {name} {percent(best_of(rows[name])[1])} ({'; '.join(controls)})"
    return [cell, _margin(mean, rows, [f"{c}@{epoch}" for c in CONTROLS_AT_EPOCH])]


def _pair_detail(pair):
    lines = [f"## {pair['machine']}Machine vs {pair['machine']}Modified"]
    base = [name for name in pair["rows"] if "@" not in name]
    equal = [name for name in pair["rows"] if "@" in name and name.split("@")[1].isdigit()]
    progress = [name for name in pair["rows"] if "@acc" in name]
    lines += _classifier_table(pair["rows"], base)
    if equal:
        counts = ", ".join(f"after epoch {e}: {c['DS1']} / {c['DS2']}" for e, c in pair["equal_training_networks"].items())
        lines += ["", f"At equal training (networks DS1 / DS2 {counts}):"] + _classifier_table(pair["rows"], equal)
    if progress:
        counts = ", ".join(f"{k}: {c['DS1']} / {c['DS2']}" for k, c in pair.get("equal_progress_networks", {}).items())
        lines += ["", f"At equal progress, the first snapshot at validation accuracy ≥ the threshold (networks DS1 / DS2 "
                  f"{counts}; `metadata@acc` adds that snapshot's epoch):"] + _classifier_table(pair["rows"], progress)  # fmt: skip
    return lines


def _classifier_table(rows, names):
    lines = ["", "| classifier | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for classifier in rows[names[0]]:
        lines.append(f"| {classifier} | " + " | ".join(percent(rows[name][classifier]) for name in names) + " |")
    return lines


def tasks_markdown(study):
    """A tasks study: which task trained each network, per row and classifier, with the confusion
    of the best weights detector."""
    config, names = study["config"], list(study["tasks"])
    lines = ["# Which task trained this network? (weights, with controls)", ""] + _sources(study) + [""]
    lines += [
        f"Accuracy in % on the test folds of {config['seeds']} stratified {100 - round(100 * config['test_size'])}/"
        f"{round(100 * config['test_size'])} splits (mean ± std; converged networks only), {len(names)} tasks; "
        f"chance (the largest task's share) {100 * study['chance']:.1f} %. Weights: "
        + ("final" if not config["epoch"] else f"after epoch {config['epoch']} (the networks that trained that long)")
        + f". `metadata`: {study['metadata_rows']}; `norm`: the weight norm alone; `shuffled`: the first weight "
        f"feature set with the task labels permuted. Study time {study['seconds']} s.",
        "",
        "Networks per task: " + ", ".join(f"{name} {count}" for name, count in study["tasks"].items()) + ".",
    ]
    lines += [f"Skipped: {note}." for note in study["skipped"]]
    lines += _classifier_table(study["rows"], list(study["rows"]))
    best = study["best"]
    lines += ["", f"Confusion of the best weights detector ({best['features']}, {best['classifier']}), summed over the "
              "test folds (row: true task, column: predicted):", ""]  # fmt: skip
    lines += ["| true \\ predicted | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    lines += [f"| {name} | " + " | ".join(str(c) for c in row) + " |" for name, row in zip(names, best["confusion"])]
    return "\n".join(lines) + "\n"


def write_study(study, markdown_path):
    """Write ``markdown_path`` and the JSON beside it (same name, ``.json``); returns both paths."""
    json_path = os.path.splitext(markdown_path)[0] + ".json"
    os.makedirs(os.path.dirname(os.path.abspath(markdown_path)), exist_ok=True)
    with open(markdown_path, "w") as f:
        f.write(tasks_markdown(study) if study["study"] == "tasks" else markdown(study))
    with open(json_path, "w") as f:
        json.dump(study, f, indent=1)
    return markdown_path, json_path
