"""The command line: ``bottlenecks <command> ...``. Thin: it parses flags into a study's config,
calls the study, prints.

Flags are the config's field names (``num_codebooks`` -> ``--num-codebooks``), made from the
dataclass by :func:`add_config_flags`, so the defaults and checks live in the study alone; older
spellings stay as aliases (``--codebooks``, ``--keys``, ``--tasks``). A bad flag, value or file is
one line ``error: ...`` on stderr and exit code 2, before any work starts.

Adding a command is a few lines: a function that adds its parser with ``add_config_flags`` and
sets ``func``, listed in ``COMMANDS`` (or in a family group such as ``_codebook_parser``)::

    def _vqgraph_parser(sub):
        p = sub.add_parser("vqgraph", help="...")
        add_config_flags(p, VQGraphConfig, help={"dataset": "..."})
        add_run_flags(p, out="runs/vqgraph")
        p.set_defaults(func=lambda args: run_study(args, VQGraphConfig, vqgraph.run, show=print_summary))
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

__all__ = ["COMMANDS", "add_config_flags", "add_run_flags", "build_parser", "main", "run_study"]

#: errors a user's flags, values or files cause: one line on the command line, exit code 2
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, ImportError, ConnectionError)


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags: a typo must not silently pick the flag it happens to prefix."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


class UsageError(Exception):
    """A command's own input error (printed as ``error: ...``, exit code 2)."""


# ------------------------------------------------------------------------------- flags from a config
def _kind(f: dataclasses.Field):
    """The argparse type of a config field, from its default or its annotation."""
    annotation = str(f.type)
    default = f.default if f.default is not dataclasses.MISSING else None
    if isinstance(default, bool) or annotation.startswith("bool"):
        return bool
    if isinstance(default, tuple) or annotation.startswith(("tuple", "list")):
        return tuple
    for t in (int, float):
        if isinstance(default, t) or annotation.startswith(t.__name__):
            return t
    return str


def _comma_list(text: str) -> tuple:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_config_flags(parser: argparse.ArgumentParser, config_cls, *, help: dict | None = None,
                     aliases: dict | None = None, skip=()) -> None:
    """One flag per field of ``config_cls`` (a :class:`~bottlenecks.studies.StudyConfig`
    dataclass): ``--field-name`` (``aliases``: extra spellings per field), typed like the field;
    booleans get ``--x`` / ``--no-x``; tuples take a comma list. Only the flags given land in the
    parsed namespace, so the defaults are the config's. ``help``: text per field (the default is
    appended); ``skip``: fields without a flag."""
    help, aliases = help or {}, aliases or {}
    flags = parser.get_default("_config_flags") or {}
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        names = [f"--{f.name.replace('_', '-')}", *aliases.get(f.name, ())]
        kind = _kind(f)
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(default) if isinstance(default, tuple) else default
        text = help.get(f.name, "")
        if default is not None:
            text = f"{text} (default {shown})" if text else f"default {shown}"
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": text.replace("%", "%%")}
        if kind is bool:
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, **kw)
        else:
            parser.add_argument(*names, type=_comma_list if kind is tuple else kind,
                                metavar=f.name.upper() if kind is not tuple else "A,B,...", **kw)
        flags[f.name] = names[0]
    parser.set_defaults(_config_flags=flags, _config_cls=config_cls)


def add_run_flags(parser: argparse.ArgumentParser, out: str | None) -> None:
    """``--out`` (the report folder) and ``--quiet`` (no progress)."""
    parser.add_argument("--out", default=out, help=f"report folder (default {out})" if out else "report folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or phase lines")


def config_from(args: argparse.Namespace, config_cls, **extra):
    """The config from the flags given (``extra``: values the command sets itself)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    return config_cls.from_dict({**values, **extra})


def _flag_message(message: str, flags: dict) -> str:
    """``n_tasks: expected ...`` -> ``--n-tasks: expected ...``: name the flag the user typed."""
    for field_name, flag in sorted(flags.items(), key=lambda kv: -len(kv[0])):
        for sep in (": ", " ", "="):
            if message.startswith(field_name + sep):
                return flag + message[len(field_name):]
    return message


def run_study(args, config_cls, run, show=None, **extra) -> int:
    """Build the config from ``args``, run the study into ``args.out``, then ``show(results, out)``."""
    config = config_from(args, config_cls, **extra)
    results = run(config, out=args.out, progress=not args.quiet)
    if show is not None:
        show(results, Path(args.out) if args.out else None)
    return 0


def print_report_path(results, out: Path | None) -> None:
    if out is not None:
        print(f"report: {out / 'report.md'} (and report.html)")


# ------------------------------------------------------------------------------- kmeans
def _kmeans_parser(sub) -> None:
    from .studies.kmeans_demo import KMeansDemoConfig

    p = sub.add_parser("kmeans", help="cluster a data set with the exact k-means engine",
                       description="Cluster an image data set (or an .npy/.npz array) with exact k-means; "
                                   "print cluster purity and time, save the centroids as images.")
    add_config_flags(p, KMeansDemoConfig, aliases={"n_clusters": ["-k", "--clusters"]}, help={
        "dataset": "fashion-mnist (falls back to digits when absent), digits, or a path to .npy / .npz (arrays "
                   "'x' and optional 'y')",
        "data_dir": "folder holding the Fashion-MNIST IDX files", "n_clusters": "number of clusters",
        "prune": "Hamerly bound pruning", "precision": "auto, float32, bfloat16 or float16"})
    add_run_flags(p, "runs/kmeans")
    p.set_defaults(func=_run_kmeans)


def _run_kmeans(args) -> int:
    from .studies import kmeans_demo

    def show(r, out):
        print(f"k-means: {r.dataset}, {r.n_samples} samples x {r.n_features} features, k={r.k}, seed={r.seed}")
        print(f"  {r.n_iter} iterations in {r.seconds:.2f} s ({r.precision} search), inertia {r.inertia:.6g}")
        if r.purity is not None:
            print(f"  cluster purity against the labels: {r.purity:.3f}")
        if r.centroids_png:
            print(f"  centroids: {r.centroids_png}")
        print(f"  metrics:   {out / 'metrics.json'}")

    return run_study(args, kmeans_demo.KMeansDemoConfig, kmeans_demo.run, show)


# ------------------------------------------------------------------------------- continual
def _continual_parser(sub) -> None:
    from .studies.continual import ContinualConfig

    p = sub.add_parser("continual", help="class-incremental learning on frozen features: DKVB vs baselines",
                       description="Stream classes task by task (no task boundaries given to the learners) and "
                                   "compare the discrete key-value bottleneck with naive fine-tuning, replay and "
                                   "joint training; writes metrics.json, report.md and plots.")
    p.add_argument("preset", nargs="?", choices=["toy2d"], help="'toy2d': the paper's 2-D toy (Figure 2)")
    add_config_flags(p, ContinualConfig, skip=("class_order",), aliases={
        "n_tasks": ["--tasks"], "n_seeds": ["--seeds"], "num_codebooks": ["--codebooks"],
        "keys_per_codebook": ["--keys"], "buffer_size": ["--buffer"]}, help={
        "dataset": "fashion-mnist (digits if absent), digits, toy2d, cifar10, cifar100 (torchvision), an .npz / "
                   ".safetensors of embeddings (x_train, y_train, x_test, y_test — or x, y, split 80/20 per class), "
                   "or an image folder (root/<class>/*.png, or root/train/<class>/ and root/test/<class>/; else "
                   "split 80/20 per class)",
        "data_dir": "folder of the Fashion-MNIST files, or torchvision's root for cifar10/cifar100 (default "
                    "$BOTTLENECKS_TORCHVISION or ~/.cache/bottlenecks/torchvision)",
        "download": "cifar10/cifar100: download the files into --data-dir when absent (needs a network)",
        "encoder": "frozen encoder of image data sets: scattering (the default), pixels, torchvision:<model>, "
                   "timm:<model>, ... (not for toy2d or an embeddings file)",
        "cache_dir": "feature cache (default $BOTTLENECKS_CACHE or ~/.cache)",
        "keys_from": "fit the DKVB keys on the (unlabelled) training inputs of another data set, in the same "
                     "feature space: any --dataset value, encoded with the same --encoder",
        "methods": "comma list of dkvb, linear, mlp, replay", "joint": "also the i.i.d. (joint) upper bounds",
        "n_tasks": "tasks in the stream; None: 5 (toy2d: 4)",
        "epochs": "epochs per task (and passes for joint); None: 5 (toy2d: 20)",
        "batch_size": "None: 256 (32 for data sets under 10,000 training samples, e.g. toy2d, digits)",
        "n_seeds": "number of seeds: seed, seed+1, ...", "num_codebooks": "DKVB heads; None: 64 (toy2d: 16)",
        "keys_per_codebook": "keys per head; None: 512 (toy2d: 64)", "dim_key": "None: 14 (toy2d: 2)",
        "head_lr": "Adam learning rate of linear/mlp/replay, tuned for i.i.d. training; None: 1e-3 (toy2d: 1e-2)",
        "buffer_size": "replay buffer size",
        "tune_lr": "choose each baseline's Adam learning rate for i.i.d. training on a held-out 10% of the "
                   "training data (grid 1e-4..1e-2), and report it"})
    add_run_flags(p, None)
    p.set_defaults(func=_run_continual)


def _run_continual(args) -> int:
    from .report.continual_report import table
    from .studies import continual

    if args.preset == "toy2d":
        if getattr(args, "dataset", "toy2d") != "toy2d":
            raise UsageError(f"--dataset {args.dataset}: the toy2d preset is its own data set; give one of them")
        args.dataset = "toy2d"
    config = config_from(args, continual.ContinualConfig)
    command = "bottlenecks " + " ".join(args._argv)
    results = continual.run(config, out=args.out, progress=not args.quiet, command=command)
    print(table(results.to_dict()))
    print(f"report: {Path(args.out or f'runs/continual-{results.dataset}') / 'report.md'}")
    return 0


# ------------------------------------------------------------------------------- codebook
def _codebook_parser(sub) -> None:
    from .studies.tokfsm import TokFSMConfig

    p = sub.add_parser("codebook", help="codebook features inside transformers (Tamkin et al. 2023)")
    cmds = p.add_subparsers(dest="codebook_command", metavar="<codebook command>", required=True)
    t = cmds.add_parser("tokfsm", help="train GPT-NeoX with and without codebooks on TokFSM; report codes vs states",
                        description="Reproduce the TokFSM experiment: a 100-state finite-state machine written as "
                                    "2-digit tokens, a 4-layer GPT-NeoX trained from scratch with and without "
                                    "codebooks; transition accuracy, code/state precision and recall against the "
                                    "best neurons, dead codes, steering success. CPU defaults take minutes; the "
                                    "paper's size is --steps 20000 --batch-size 512 on a GPU.")
    add_config_flags(t, TokFSMConfig, aliases={"k": ["-k"]}, help={
        "steps": "training steps per model (paper 20000)", "batch_size": "sequences per step (paper 512)",
        "num_codes": "codes per codebook (as the paper)", "k": "codes summed per attention head",
        "mlp_k": "codes summed per MLP codebook",
        "code_gradient": "the chosen codes also get the downstream gradient (the public code's aeloss)",
        "codebook_warmup": "fraction of the steps each codebook model trains with its codebooks bypassed, before "
                           "k-means fits them to the warmed-up activations (0 = codebooks from step 0)",
        "mlp_commitment": "commitment-loss weight of the MLP codebooks (without it the MLP outputs grow without "
                          "bound)",
        "scale": "codebook output scale: code (a learned norm per code, as the public code), running, learned, "
                 "match, none",
        "models": "comma list from original (required), codebook_attn, codebook_attn_raw (no dead-code "
                  "re-seeding), codebook_attn_mlp",
        "eval_sequences": "held-out sequences for transition accuracy (paired standard error on each gap)",
        "analysis_sequences": "held-out sequences for code analysis",
        "prompts_per_state": "steering prompts per FSM state",
        "threads": "torch threads (None: 1 on CPU, where small ops run faster on one thread)",
        "reuse": "load the models saved in OUT/models by an earlier run with the same training settings instead "
                 "of training again (re-run the analysis only)",
        "num_states": "FSM states (at most 100: two digits)", "length": "states per training sequence"})
    t.add_argument("--paper-size", action="store_true", help="the paper's budget: 20000 steps of 512 (a GPU job)")
    add_run_flags(t, "runs/codebook-tokfsm")
    t.set_defaults(func=_run_tokfsm)


def _run_tokfsm(args) -> int:
    from .studies import tokfsm

    size = {k: v for k, v in tokfsm.PAPER_SIZE.items() if k not in vars(args)} if args.paper_size else {}

    def show(r, out):
        for name, m in r.models.items():
            print(f"  {name}: transition accuracy {100 * m['transition_accuracy']:.1f}%")
        print_report_path(r, out)

    return run_study(args, tokfsm.TokFSMConfig, tokfsm.run, show, **size)


# ------------------------------------------------------------------------------- info
def _info_parser(sub) -> None:
    from .studies.info_plane import InfoPlaneConfig

    p = sub.add_parser("info", help="information bottleneck: information planes and MI estimates")
    cmds = p.add_subparsers(dest="info_command", metavar="<info command>", required=True)
    t = cmds.add_parser("plane", help="information plane of tanh / ReLU networks on the 12-bit data set",
                        description="Train the Shwartz-Ziv & Tishby 12-bit network(s) (4096 inputs, "
                                    "H(Y) = 0.99916 bits) and plot I(X;T) and I(T;Y) of every layer over training.")
    add_config_flags(t, InfoPlaneConfig, help={
        "activation": "tanh, relu or both", "estimator": "binning (as the paper) or a k-NN estimator"})
    add_run_flags(t, "runs/info-plane")
    t.set_defaults(func=lambda args: _run_info_plane(args))
    m = cmds.add_parser("mi", help="estimate I(X;Y) from arrays x and y in an .npz file",
                        description="Mutual information between the arrays 'x' and 'y' of an .npz file "
                                    "(rows are samples; 1-D arrays are one column).")
    m.add_argument("data", help=".npz with arrays x (n, dx) and y (n, dy)")
    m.add_argument("--x-key", default="x")
    m.add_argument("--y-key", default="y")
    m.add_argument("--method", default="ksg1", help="ksg1 (default), ksg2, mixed, plugin, gaussian")
    m.add_argument("-k", type=int, default=3, help="neighbours for the k-NN estimators (default 3)")
    m.add_argument("--bins", type=int, default=None, help="bins per column for the plug-in estimator")
    m.add_argument("--units", default="nats", choices=["nats", "bits"])
    m.add_argument("--ci", type=float, default=None, help="confidence level of an interval, e.g. 0.95")
    m.add_argument("--n-resamples", type=int, default=200)
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=_run_info_mi, _config_flags={
        "k": "-k", "method": "--method", "bins": "--bins", "units": "--units", "ci": "--ci",
        "n_resamples": "--n-resamples", "seed": "--seed"})


def _run_info_plane(args) -> int:
    from .studies import info_plane

    return run_study(args, info_plane.InfoPlaneConfig, info_plane.run, print_report_path)


def _run_info_mi(args) -> int:
    from .data import load_arrays
    from .info import mutual_information

    arrays = load_arrays(args.data, (args.x_key, args.y_key))
    x, y = arrays[args.x_key], arrays[args.y_key]
    est = mutual_information(x, y, method=args.method, k=args.k, units=args.units, bins=args.bins,
                             ci=args.ci, n_resamples=args.n_resamples, seed=args.seed)
    if args.ci is None:
        print(f"I(X;Y) = {est:.6f} {args.units} ({args.method}, n={len(x)})")
    else:
        print(f"I(X;Y) = {est.value:.6f} {args.units} ({args.method}, n={len(x)}), {100 * args.ci:g}% interval "
              f"[{est.low:.6f}, {est.high:.6f}]")
    return 0


# ------------------------------------------------------------------------------- concepts
def _concepts_parser(sub) -> None:
    from .studies.concepts_demo import ConceptsDemoConfig

    p = sub.add_parser("concepts", help="concept bottleneck models: demo, concept selection, CUB check")
    cmds = p.add_subparsers(dest="concepts_command", metavar="<concepts command>", required=True)
    d = cmds.add_parser("demo", help="PCBM on generated concept shapes: accuracy, interventions, a global edit",
                        description="Generated shapes with colour, shape, size and texture concepts and a spurious "
                                    "background tint; CAVs on frozen features, a sparse GLM head, the black-box "
                                    "probe, intervention curves and the edit that removes the spurious concept.")
    add_config_flags(d, ConceptsDemoConfig, help={
        "encoder": "scattering or pixels", "n_train": "images for concept annotation and for training",
        "n_test": "images in each of the test and shifted splits", "image_size": "side of the generated images",
        "threads": "torch threads during the run (1: many small ops; the numbers do not depend on it)",
        "compare": "also the other sources and heads"})
    add_run_flags(d, "runs/concepts-demo")
    d.set_defaults(func=_run_concepts_demo)
    s = cmds.add_parser("select", help="filter and select text concepts per class (Label-free filters + LaBo)",
                        description="Read {class: [candidate concepts]} from JSON, drop concepts by Label-free "
                                    "CBM's filters and keep k per class by LaBo's submodular selection; text "
                                    "embedded offline (MiniLM) unless --text-encoder names another.")
    s.add_argument("concepts", help="JSON file: {class name: [candidate concept, ...]}")
    s.add_argument("-k", "--per-class", type=int, default=5)
    s.add_argument("--text-encoder", default=None, help="e.g. open_clip:ViT-B-32 (default: offline MiniLM)")
    s.add_argument("--images", default=None, help=".npz with x (image embeddings in the text space) and y")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="runs/concepts-select")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_run_concepts_select)
    c = cmds.add_parser("cub", help="check a CUB-200-2011 folder and its 112-attribute filtering")
    c.add_argument("root", help="the CUB_200_2011 folder (images/, images.txt, attributes/ ...)")
    c.add_argument("--min-classes", type=int, default=10,
                   help="keep attributes on (by class majority vote) for at least this many classes (default 10)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default=None)
    c.set_defaults(func=_run_concepts_cub)


def _run_concepts_demo(args) -> int:
    from .studies import concepts_demo

    def show(r, out):
        for target, met in r.targets.items():
            print(f"  target {target}: {'met' if met else 'NOT met'}")
        print_report_path(r, out)

    return run_study(args, concepts_demo.ConceptsDemoConfig, concepts_demo.run, show)


def _run_concepts_select(args) -> int:
    from .concepts.selection import run_concept_selection

    if not Path(args.concepts).exists():
        raise FileNotFoundError(f"{args.concepts}: no such file; expected a JSON file {{class: [concepts]}}")
    try:
        result = run_concept_selection(args.concepts, k_per_class=args.per_class, encoder=args.text_encoder,
                                       image_embeddings=args.images, out=args.out, seed=args.seed,
                                       progress=not args.quiet)
    except ImportError as err:
        raise UsageError(str(err)) from None
    for name, chosen in result["selected"].items():
        print(f"  {name}: {', '.join(chosen)}")
    print(f"{result['n_candidates']} candidates, {result['n_after_filters']} after filters, "
          f"{result['n_selected']} selected; written to {Path(args.out) / 'selected_concepts.json'}")
    return 0


def _run_concepts_cub(args) -> int:
    from .data.cub import describe_cub

    summary = describe_cub(args.root, min_classes=args.min_classes, out=args.out, seed=args.seed)
    print(f"CUB at {summary['root']}: {summary['n_train']} train / {summary['n_test']} test images, "
          f"{summary['n_classes']} classes, {summary['n_attributes']} of {summary['n_attributes_total']} "
          f"attributes kept")
    return 0


# ------------------------------------------------------------------------------- graph
def _graph_parser(sub) -> None:
    from .studies.vqgraph import VQGraphConfig

    p = sub.add_parser("graph", help="graph bottlenecks: VQGraph (graph tokenizer + GNN-to-MLP distillation)")
    cmds = p.add_subparsers(dest="graph_command", metavar="<graph command>", required=True)
    v = cmds.add_parser("vqgraph", help="SAGE teacher, graph tokenizer and MLP / GLNN / VQGraph students",
                        description="VQGraph (Yang et al., ICLR 2024): teacher, tokenizer and students on the same "
                                    "splits and seeds, transductive and inductive; choices on validation only.")
    add_config_flags(v, VQGraphConfig, help={"dataset": "cora, citeseer or an .npz graph (CPF or x/edge_index/y)",
                                             "seeds": "number of seeds (splits)", "seed": "first seed"},
                     skip=("teacher_dropouts", "student_dropouts", "glnn_label_weights", "vq_grid"))
    add_run_flags(v, "runs/vqgraph")
    v.set_defaults(func=_run_vqgraph)


def _run_vqgraph(args) -> int:
    from .studies import vqgraph

    def show(r, out):
        for setting, runs in r.runs.items():
            print(f"  {setting}: " + ", ".join(f"{m} {100 * sum(v['test']) / len(v['test']):.1f}%"
                                               for m, v in runs.items()))
        print_report_path(r, out)

    return run_study(args, vqgraph.VQGraphConfig, vqgraph.run, show)


# ------------------------------------------------------------------------------- browse
def _browse_parser(sub) -> None:
    p = sub.add_parser("browse", help="rebuild (and open) the interactive report.html of a run",
                       description="Build RUN_DIR/report.html from the files a study wrote there (metrics.json, "
                                   "codes.json, ...): one self-contained page that opens offline.")
    p.add_argument("run_dir", help="a run's folder (the --out of a study)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--out", default=None, help="write the page here instead of RUN_DIR/report.html")
    p.set_defaults(func=_run_browse)


def _run_browse(args) -> int:
    from .report.html_browse import build_html

    print(f"report: {build_html(args.run_dir, out=args.out, open_browser=args.open)}")
    return 0


# ------------------------------------------------------------------------------- compare
def _compare_parser(sub) -> None:
    from .studies.compare import CompareConfig

    p = sub.add_parser("compare", help="every bottleneck head on the same features, data and class-incremental stream",
                       description="DKVB, VQ codebook, VIB, concept bottleneck, linear / MLP probes and replay on one "
                                   "frozen feature set: i.i.d. and stream accuracy, forgetting, information, code "
                                   "usage, locality of updates, time. Writes <name>.md, .json and two PNGs.")
    # the numeric grids and given learning rates stay config-only (a comma list parses as strings)
    add_config_flags(p, CompareConfig, aliases={"n_tasks": ["--tasks"]},
                     skip=("lr_grid", "dkvb_lr_grid", "learning_rates"), help={
        "dataset": "fashion-mnist (scattering features), digits, concept-shapes, or an .npz / .safetensors file of "
                   "embeddings (x_train, y_train, x_test, y_test — or x, y)",
        "heads": "comma list of dkvb, vq, vib, cbm, linear, mlp, replay (None: every head the data supports; cbm "
                 "needs concepts)",
        "seeds": "number of seeds: seed, seed+1, ... (mean ± std)", "n_tasks": "tasks of the class-incremental stream",
        "beta": "the VIB head's KL weight", "n_train": "a stratified subsample of the training set"})
    p.add_argument("--name", default="report", help="report file stem: <name>.md, .json, -scatter.png, -plane.png")
    add_run_flags(p, None)
    p.set_defaults(func=_run_compare)


def _run_compare(args) -> int:
    from .report.compare_report import table
    from .studies import compare

    config = config_from(args, compare.CompareConfig)
    out = Path(args.out or f"runs/compare-{Path(config.dataset).stem}")
    results = compare.run(config, out=out, progress=not args.quiet, stem=args.name,
                          command="bottlenecks " + " ".join(args._argv))
    print(table(results))
    print(f"report: {out / (args.name + '.md')} ({results.seconds:.0f} s)")
    return 0


# ------------------------------------------------------------------------------- the parser and main
#: functions that add one top-level command (or a family's group of commands) each
COMMANDS = [_kmeans_parser, _continual_parser, _codebook_parser, _info_parser, _concepts_parser, _graph_parser,
            _browse_parser, _compare_parser]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="bottlenecks",
                     description="Put bottlenecks into neural networks, train them and look inside.")
    parser.add_argument("--version", action="version", version=f"bottlenecks {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for add in COMMANDS:
        add(sub)
    return parser


def _error(message: str, args: argparse.Namespace | None = None) -> int:
    flags = getattr(args, "_config_flags", None) or {}
    line = " ".join(_flag_message(str(message), flags).split())  # one line, whatever the message
    print(f"error: {line}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run ``bottlenecks <argv>``; returns the exit code (2 for bad flags, values or files: one
    line ``error: ...`` on stderr). ``BOTTLENECKS_TRACEBACK=1`` raises instead, for debugging."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    args._argv = argv
    try:
        return args.func(args)
    except (UsageError, *USER_ERRORS) as err:
        if os.environ.get("BOTTLENECKS_TRACEBACK"):
            raise
        return _error(str(err), args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
