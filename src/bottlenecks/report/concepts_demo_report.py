"""The concepts demo's report: ``report.md`` and the one-line summary."""

from __future__ import annotations

import json

__all__ = ["concepts_demo_markdown", "concepts_demo_summary"]

def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def concepts_demo_summary(m: dict) -> str:
    return (f"concept acc {_pct(m['concept_accuracy'])} | class acc {_pct(m['test_accuracy'])} vs black box "
            f"{_pct(m['black_box']['test'])} | all concepts intervened {_pct(m['intervened_accuracy'])} | shifted "
            f"{_pct(m['shifted_accuracy'])} -> {_pct(m['edited_shifted_accuracy'])} after removing "
            f"'{m['spurious_concept']}'")


def concepts_demo_markdown(m: dict, targets: dict) -> str:
    c = m["config"]
    ok = {True: "met", False: "**not met**"}
    values = {"concept_accuracy": _pct(m["concept_accuracy"]),
              "gap_to_black_box": f"{100 * m['gap_to_black_box']:+.1f} points (CBM {_pct(m['test_accuracy'])}, "
                                  f"probe {_pct(m['black_box']['test'])})",
              "intervened_accuracy": _pct(m["intervened_accuracy"]),
              "edit_gain_shifted": f"{100 * m['edit_gain_shifted']:+.1f} points ({_pct(m['shifted_accuracy'])} -> "
                                   f"{_pct(m['edited_shifted_accuracy'])})"}
    lines = [
        "# Concept bottleneck demo (generated concept shapes)", "",
        f"Encoder `{c['encoder']}` ({c['embedding_dim']}-d), {c['n_train']} concept-annotation + {c['n_train']} "
        f"training images, {c['n_test']} test and {c['n_test']} shifted images, {c['image_size']}x{c['image_size']}, "
        f"seed {c['seed']}. Main model: CAVs (linear-SVM margins) learned on the concept split, sparse GLM head "
        f"(GLM-SAGA path, lambda {c['glm_lambda']:.4g} by validation accuracy, rule '{c['glm_selection']}': "
        f"{_pct(c['glm_val_accuracy'])} on {c['glm_val_size']} held-out rows, best on the path "
        f"{_pct(c['glm_best_val_accuracy'])}; {c['glm_nnz_per_class']:.1f} concepts per class).", "",
        "| target | measured | |", "|---|---|---|",
        *[f"| {targets[k][1]} | {values[k]} | {ok[m['targets'][k]]} |" for k in targets], "",
        "Class accuracy of the edited model on the i.i.d. test split: "
        f"{_pct(m['edited_test_accuracy'])} (before: {_pct(m['test_accuracy'])}); with all true concepts "
        f"intervened: {_pct(m['edited_intervened_accuracy'])}. Black-box probe on the shifted "
        f"split: {_pct(m['black_box']['shifted'])}.", "",
        "## Concept accuracy (test)", "", "| concept | accuracy |", "|---|---|",
        *[f"| {k} | {_pct(v)} |" for k, v in m["concept_accuracy_per_concept"].items()], "",
        "## Interventions", "", "![intervention curve](intervention_curve.png)", "",
        "| concepts intervened | " + " | ".join(str(i) for i in m["intervention_curves"]["random"]["n_intervened"])
        + " |", "|---" * (1 + len(m["intervention_curves"]["random"]["n_intervened"])) + "|",
        *[f"| {p} | " + " | ".join(f"{100 * a:.1f}" for a in cv["accuracy"]) + " |"
          for p, cv in m["intervention_curves"].items()], "",
        "## Concept weights and the edit", "", "![concept weights](concept_weights.png)", "",
        f"Edit: `{json.dumps(m['edit_log'])}`", "",
        "## Other sources and heads on the same embeddings", "",
        "| model | concept acc | test | all intervened | shifted | shifted after edit | edit gain |",
        "|---|---|---|---|---|---|---|",
        *[f"| {k} | {_pct(v['concept_accuracy'])} | {_pct(v['test_accuracy'])} | {_pct(v['intervened_accuracy'])} | "
          f"{_pct(v['shifted_accuracy'])} | {_pct(v['edited_shifted_accuracy'])} | "
          f"{100 * v['edit_gain_shifted']:+.1f} |"
          for k, v in m["variants"].items()],
        "", "![samples](samples.png)", "",
        f"Time: {m['seconds']['total']:.0f} s in all ({m['seconds']['encode']:.0f} s encoding) on a shared, noisy CPU.",
    ]
    return "\n".join(lines) + "\n"
