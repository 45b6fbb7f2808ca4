"""The information-plane study's report: ``report.md``."""

from __future__ import annotations

__all__ = ["info_plane_markdown"]

def info_plane_markdown(m: dict) -> str:
    c, d = m["config"], m["data"]
    lines = ["# Information plane: 12-bit data set, tanh vs ReLU", "",
             f"- data: 4096 12-bit inputs (stand-in labelling with the published label entropy, see "
             f"`bottlenecks.data.twelve_bit`), H(Y) = {d['h_y_bits']:.5f} bits (published {d['h_y_published_bits']}), "
             f"H(X) = {d['h_x_bits']:.0f} bits; {d['n_train']} training inputs (seeded split)",
             f"- network 12-{'-'.join(map(str, c['widths']))}-2, Adam lr {c['lr']}, batch {c['batch_size']}, "
             f"{c['epochs']} epochs, seed {c['seed']}",
             f"- call: `info_plane.run(InfoPlaneConfig(activation={c['activation']!r}, epochs={c['epochs']}, "
             f"seed={c['seed']}, estimator={c['estimator']!r}, bins={c['bins']}))`; "
             f"python {m['environment']['python']}, torch "
             f"{m['environment']['torch']}, {m['environment']['threads']} thread(s); times are wall-clock on a shared, "
             "noisy machine",
             f"- estimator: {c['estimator']}" + (f" ({c['bins']} equal bins over each layer's range, on all 4096 "
                                                 "inputs)" if c["estimator"] == "binning" else ""),
             "- I(X;T) <= H(X) = 12 bits and I(T;Y) <= H(Y) hold by construction (plug-in on the 4096 inputs); "
             "binning makes I(X;T) a property of the bin width, not of the continuous layer (Saxe et al. 2018)",
             ""]
    for act, r in m["runs"].items():
        f = r["final"]
        lines += [f"## {act}", "",
                  f"![{act}](info-plane-{act}.png)", "",
                  f"final train / test accuracy {f['train_acc']:.3f} / {f['test_acc']:.3f}, "
                  f"train / test loss {f['train_loss']:.4f} / {f['test_loss']:.4f}; {r['seconds']:.1f} s", "",
                  "| layer | width | I(X;T) peak (epoch) | I(X;T) final | compression | I(T;Y) final | "
                  "I(T;Y) max | degree of IB I(X;T\\|Y) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, L in r["layers"].items():
            lines.append(f"| {name} | {L['width']} | {L['i_xt_peak']:.3f} ({L['i_xt_peak_epoch']}) | "
                         f"{L['i_xt_final']:.3f} | {L['compression_bits']:.3f} | {L['i_ty_final']:.4f} | "
                         f"{L['i_ty_max']:.4f} | {L['degree_of_ib_bits']:.3f} |")
        lines.append("")
    lines.append("Values in bits. \"compression\" = peak minus final I(X;T).")
    return "\n".join(lines) + "\n"
