"""The concept-bottleneck demo over several seeds (and the pixel encoder once), written to
benchmarks/results/concepts-demo.md (+ .json and the seed-0 PNGs).

    .venv/bin/python benchmarks/concepts_demo.py [--seeds 0 1 2] [--out benchmarks/results]

Each seed draws new data (all four splits) and refits everything; the targets are judged per seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np

from bottlenecks.studies.concepts_demo import TARGETS, ConceptsDemoConfig, run

ROWS = [("concept_accuracy", "concept accuracy"), ("test_accuracy", "class accuracy (CBM)"),
        ("black_box", "class accuracy (black-box probe)"), ("gap_to_black_box", "probe minus CBM"),
        ("intervened_accuracy", "all concepts intervened"), ("shifted_accuracy", "shifted, before edit"),
        ("edited_shifted_accuracy", "shifted, after removing the tint"), ("edit_gain_shifted", "edit gain (shifted)"),
        ("edited_test_accuracy", "i.i.d. test after the edit"),
        ("edited_intervened_accuracy", "all concepts intervened, after the edit")]


def _value(m: dict, key: str) -> float:
    return m["black_box"]["test"] if key == "black_box" else m[key]


def _texture_use(m: dict) -> str:
    """How much the head reads texture from the true concept vs the spurious tint: a class with no
    weight on 'striped' can only tell its texture from the tint, which true-concept interventions
    then get wrong wherever tint and texture disagree (10% of i.i.d. test images)."""
    W = np.abs(np.asarray(m["weights"]))
    j, t = m["concept_names"].index("striped"), m["concept_names"].index(m["spurious_concept"])
    return f"{int((W[:, j] == 0).sum())} / {W[:, j].mean():.2f}, {W[:, t].mean():.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    out = Path(args.out)
    runs, pixels = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            runs[seed] = run(ConceptsDemoConfig(seed=seed), out=Path(tmp) / f"seed{seed}", progress=False).to_dict()
            print(f"seed {seed}: targets {runs[seed]['targets']}, {runs[seed]['seconds']['total']:.0f} s", flush=True)
        first = Path(tmp) / f"seed{args.seeds[0]}"
        for png in ("intervention_curve.png", "concept_weights.png", "samples.png"):
            shutil.copy(first / png, out / f"concepts-demo-{png}")
        seed0_report = (first / "report.md").read_text()
        pixels = run(ConceptsDemoConfig(seed=args.seeds[0], encoder="pixels", compare=False),
                     out=Path(tmp) / "pixels", progress=False).to_dict()
    lines = ["# Concept bottleneck demo: targets over seeds", "",
             "`bottlenecks concepts demo` (library: `bottlenecks.studies.concepts_demo.run`) on the generated "
             "concept shapes; scattering encoder (kymatio, J=2, first order, per colour channel), CAVs learned on the "
             "concept-annotation split, sparse GLM head (GLM-SAGA path, lambda by the one-standard-error rule on "
             "validation accuracy: the sparsest lambda within one binomial standard error of the best). "
             "Models and probe fit on one thread whatever the caller's setting, so each seed's numbers are "
             "reproducible. Written by `benchmarks/concepts_demo.py`. Shared 2-core CPU, noisy: times are rough.", "",
             "| metric | " + " | ".join(f"seed {s}" for s in runs) + " | min | median |",
             "|---" * (len(runs) + 3) + "|"]
    for key, label in ROWS:
        vals = [_value(m, key) for m in runs.values()]
        lines.append(f"| {label} | " + " | ".join(f"{100 * v:.1f}" for v in vals)
                     + f" | {100 * min(vals):.1f} | {100 * statistics.median(vals):.1f} |")
    cfgs = [m["config"] for m in runs.values()]
    lines.append("| GLM lambda / concepts per class | " + " | ".join(
        f"{c['glm_lambda']:.3g} / {c['glm_nnz_per_class']:.1f}" for c in cfgs) + " | | |")
    lines.append("| GLM validation accuracy, chosen / best on the path | " + " | ".join(
        f"{100 * c['glm_val_accuracy']:.1f} / {100 * c['glm_best_val_accuracy']:.1f} (n={c['glm_val_size']})"
        for c in cfgs) + " | | |")
    lines.append("| GLM classes with no weight on 'striped' (of 6) / mean abs weight on 'striped', tint | "
                 + " | ".join(_texture_use(m) for m in runs.values()) + " | | |")
    lines += ["", "| target | " + " | ".join(f"seed {s}" for s in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for key, (_, text) in TARGETS.items():
        lines.append(f"| {text} | " + " | ".join("met" if m["targets"][key] else "**not met**"
                                                 for m in runs.values()) + " |")
    if not all(m["targets"]["intervened_accuracy"] for m in runs.values()):
        lines += ["", "Where all-concepts-intervened accuracy stays below 99%: the head is fitted on *predicted* "
                  "concept scores (PCBM's sequential setting). 'striped' is the hardest concept to detect, while "
                  "the tint is detected perfectly and agrees with the texture on 90% of training images, so the L1 "
                  "path lets the tint stand in for texture, and a sparser point on the path leaves some classes "
                  "with no weight on 'striped' (row above). Intervening with all true concepts also sets the tint "
                  "to its true value, which contradicts the texture on 10% of i.i.d. test images. The lambda rule "
                  "was fixed on principle (glmnet's one-standard-error rule) before these numbers were seen; the "
                  "row \"cav + glm, lambda rule 'best'\" below is the argmax rule on the same data, for comparison."]
    lines += ["", "Other sources and heads (same data, untuned), per seed: all-concepts-intervened accuracy / "
              "shifted accuracy before -> after the edit.", "",
              "| model | " + " | ".join(f"seed {s}" for s in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for variant in next(iter(runs.values()))["variants"]:
        lines.append(f"| {variant} | " + " | ".join(
            f"{100 * m['variants'][variant]['intervened_accuracy']:.1f} / "
            f"{100 * m['variants'][variant]['shifted_accuracy']:.1f} -> "
            f"{100 * m['variants'][variant]['edited_shifted_accuracy']:.1f}" for m in runs.values()) + " |")
    lines += ["", f"Pixel encoder (seed {args.seeds[0]}, 768-d raw RGB): concept accuracy "
              f"{100 * pixels['concept_accuracy']:.1f}%, class accuracy {100 * pixels['test_accuracy']:.1f}% "
              f"(probe {100 * pixels['black_box']['test']:.1f}%), all intervened "
              f"{100 * pixels['intervened_accuracy']:.1f}%, shifted {100 * pixels['shifted_accuracy']:.1f}% -> "
              f"{100 * pixels['edited_shifted_accuracy']:.1f}%; per concept: "
              + ", ".join(f"{k} {100 * v:.0f}%" for k, v in pixels["concept_accuracy_per_concept"].items()) + ".",
              "", "Seconds per run: " + ", ".join(f"{m['seconds']['total']:.0f}" for m in runs.values()), "",
              "---", "", "## Seed " + str(args.seeds[0]) + " report", ""]
    body = seed0_report.split("\n", 2)[2]
    body = body.replace("](intervention_curve.png)", "](concepts-demo-intervention_curve.png)")
    body = body.replace("](concept_weights.png)", "](concepts-demo-concept_weights.png)")
    body = body.replace("](samples.png)", "](concepts-demo-samples.png)")
    (out / "concepts-demo.md").write_text("\n".join(lines) + "\n" + body)
    (out / "concepts-demo.json").write_text(json.dumps({"seeds": {str(s): m for s, m in runs.items()},
                                                        "pixels": pixels}, indent=1))


if __name__ == "__main__":
    main()
