"""The command line: ``bottlenecks <command> ...``. Thin: it parses, calls the library, prints."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _kmeans_parser(sub) -> None:
    p = sub.add_parser("kmeans", help="cluster a data set with the exact k-means engine",
                       description="Cluster an image data set (or an .npy/.npz array) with exact k-means; "
                                   "print cluster purity and time, save the centroids as images.")
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist (default; falls back to digits when absent), digits, or a path to "
                        ".npy / .npz (arrays 'x' and optional 'y')")
    p.add_argument("--data-dir", default=None, help="folder holding the Fashion-MNIST IDX files")
    p.add_argument("-k", "--clusters", type=int, default=10, help="number of clusters (default 10)")
    p.add_argument("--n-init", type=int, default=1)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--no-prune", action="store_true", help="disable Hamerly bound pruning")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/kmeans", help="folder for centroids.png and metrics.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_kmeans)


def _load(args):
    """-> (x (n, d) float32, labels or None, image shape or None, name, class names)."""
    path = Path(args.dataset)
    if path.suffix in (".npy", ".npz"):
        if not path.exists():
            raise SystemExit(f"error: --dataset {path}: no such file")
        arr = np.load(path)
        x, y = (arr, None) if path.suffix == ".npy" else (arr["x"], arr["y"] if "y" in arr else None)
        return np.asarray(x, np.float32).reshape(len(x), -1), y, None, path.name, None
    from .data import load_image_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = load_image_dataset(args.dataset, data_dir=args.data_dir, split="train")
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"error: {err}") from None
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    return ds.flat, ds.labels, ds.image_shape, ds.name, ds.class_names


def purity(labels: np.ndarray, classes: np.ndarray) -> float:
    """Fraction of points whose cluster's majority class is their own class."""
    table = np.zeros((labels.max() + 1, classes.max() + 1), dtype=np.int64)
    np.add.at(table, (labels, classes), 1)
    return float(table.max(1).sum() / len(labels))


def run_kmeans(args) -> int:
    import torch

    from .cluster import kmeans
    from .report.plots import save_image_grid

    x, y, shape, name, class_names = _load(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"k-means: {name}, {x.shape[0]} samples x {x.shape[1]} features, k={args.clusters}, seed={args.seed}")
    xt = torch.from_numpy(x).to(args.device)
    t0 = time.perf_counter()
    try:
        res = kmeans(xt, args.clusters, n_init=args.n_init, max_iter=args.max_iter, tol=args.tol, seed=args.seed,
                     precision=args.precision, prune=not args.no_prune, progress=not args.quiet)
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None
    seconds = time.perf_counter() - t0
    labels = res.labels.cpu().numpy()
    metrics = {"dataset": name, "n_samples": int(x.shape[0]), "n_features": int(x.shape[1]),
               "k": args.clusters, "seed": args.seed, "inertia": res.inertia, "n_iter": res.n_iter,
               "seconds": round(seconds, 3), "precision": res.info["precision"]}
    if y is not None:
        metrics["purity"] = purity(labels, np.asarray(y))
    print(f"  {res.n_iter} iterations in {seconds:.2f} s ({res.info['precision']} search), inertia {res.inertia:.6g}")
    if "purity" in metrics:
        print(f"  cluster purity against the labels: {metrics['purity']:.3f}")
    if shape is not None:
        centroids = res.centroids.cpu().numpy().reshape(-1, *shape)
        titles = None
        if y is not None and class_names is not None:
            majority = [np.bincount(np.asarray(y)[labels == j], minlength=len(class_names)).argmax()
                        if (labels == j).any() else -1 for j in range(args.clusters)]
            titles = [class_names[m][:12] if m >= 0 else "(empty)" for m in majority]
        png = save_image_grid(centroids, out / "centroids.png", titles=titles,
                              suptitle=f"k-means centroids of {name} (k={args.clusters})")
        print(f"  centroids: {png}")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"  metrics:   {out / 'metrics.json'}")
    return 0


def _continual_parser(sub) -> None:
    p = sub.add_parser("continual", help="class-incremental learning on frozen features: DKVB vs baselines",
                       description="Stream classes task by task (no task boundaries given to the learners) and "
                                   "compare the discrete key-value bottleneck with naive fine-tuning, replay and "
                                   "joint training; writes metrics.json, report.md and plots.")
    p.add_argument("preset", nargs="?", choices=["toy2d"], help="'toy2d': the paper's 2-D toy (Figure 2)")
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist (default; digits if absent), digits, toy2d, cifar10, cifar100 (torchvision), "
                        "an .npz / .safetensors of embeddings (x_train, y_train, x_test, y_test — or x, y, split "
                        "80/20 per class), or an image folder (root/<class>/*.png, or root/train/<class>/ and "
                        "root/test/<class>/; else split 80/20 per class)")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST files, or torchvision's root for "
                                                    "cifar10/cifar100 (default $BOTTLENECKS_TORCHVISION or "
                                                    "~/.cache/bottlenecks/torchvision)")
    p.add_argument("--download", action="store_true", help="cifar10/cifar100: download the files into --data-dir "
                                                           "when absent (needs a network connection)")
    p.add_argument("--encoder", default="scattering", help="frozen encoder: scattering (default), pixels, ...")
    p.add_argument("--cache-dir", default=None, help="feature cache (default $BOTTLENECKS_CACHE or ~/.cache)")
    p.add_argument("--methods", default="dkvb,linear,mlp", help="comma list of dkvb, linear, mlp, replay")
    p.add_argument("--no-joint", action="store_true", help="skip the i.i.d. (joint) upper bounds")
    p.add_argument("--tasks", type=int, default=5)
    p.add_argument("--classes-per-task", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="epochs per task (and passes for joint); default 5 "
                   "(toy2d: 20)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default 256 (32 for data sets under 10,000 training samples, e.g. toy2d, digits)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds: seed, seed+1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--codebooks", type=int, default=None, help="DKVB heads; default 64 (toy2d: 16)")
    p.add_argument("--keys", type=int, default=None, help="keys per head; default 512 (toy2d: 64)")
    p.add_argument("--dim-key", type=int, default=14)
    p.add_argument("--topk", type=int, default=1)
    p.add_argument("--key-init", default="kmeans", choices=["kmeans", "ema", "random"])
    p.add_argument("--dkvb-lr", type=float, default=0.3)
    p.add_argument("--head-lr", type=float, default=None,
                   help="Adam learning rate of linear/mlp/replay, tuned for i.i.d. training: default 1e-3 "
                        "(toy2d: 1e-2)")
    p.add_argument("--buffer", type=int, default=500, help="replay buffer size")
    p.add_argument("--keys-from", default=None,
                   help="fit the DKVB keys on the (unlabelled) training inputs of another data set, in the same "
                        "feature space: any --dataset value, encoded with the same --encoder")
    p.add_argument("--tune-lr", action="store_true",
                   help="choose each baseline's Adam learning rate for i.i.d. training on a held-out 10%% of "
                        "the training data (grid 1e-4..1e-2), and report it")
    p.add_argument("--out", default=None, help="report folder (default runs/continual-<dataset>)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_continual)


def _continual_data(args):
    """-> (x_train, y_train, x_test, y_test, name, notes)."""
    notes = []
    if args.dataset == "toy2d":
        from .data.toy2d import make_toy2d

        x_tr, y_tr = make_toy2d(seed=args.seed)
        x_te, y_te = make_toy2d(seed=args.seed, split="test")
        return x_tr, y_tr, x_te, y_te, "toy2d", notes
    from .data import DATASETS, EMBEDDING_SUFFIXES, load_embeddings

    path = Path(args.dataset).expanduser()
    named = args.dataset.strip().lower().replace("_", "-") in DATASETS
    if path.suffix.lower() in EMBEDDING_SUFFIXES or (path.is_file() and not named):
        try:
            emb = load_embeddings(path, seed=args.seed)
        except (ValueError, TypeError, FileNotFoundError) as err:
            where = "" if str(err).startswith(str(path)) else f"--dataset {args.dataset}: "
            raise SystemExit(f"error: {where}{err}") from None
        notes.append(f"- data: embeddings {emb.source} ({len(emb.x_train)} train / {len(emb.x_test)} test rows, "
                     f"{emb.dim} features, {emb.n_classes} classes)")
        return emb.x_train, emb.y_train, emb.x_test, emb.y_test, emb.name, notes
    from .encoders import FeatureCache, get_encoder

    cifar = not named and args.dataset.strip().lower().replace("-", "").replace("_", "") in ("cifar10", "cifar100")
    folder = not named and not cifar and path.is_dir()
    if not (named or cifar or folder) and ("/" in args.dataset or "\\" in args.dataset):
        raise SystemExit(f"error: --dataset {args.dataset}: no such file or folder")
    if named and args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise SystemExit(f"error: --data-dir {args.data_dir} does not exist; give the folder holding the "
                         "data set's files (for Fashion-MNIST: apt-get install dataset-fashion-mnist)")
    # grey (n, H, W) for the encoders made for grey images; RGB (n, 3, H, W) for pretrained models
    grayscale = args.encoder in ("pixels", "scattering")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if cifar:
                from .data import load_cifar

                train, test = load_cifar(args.dataset, root=args.data_dir, download=args.download,
                                         grayscale=grayscale)
                dataset_id = train.name
            elif folder:
                from .data import load_image_folder

                train, test = load_image_folder(path, grayscale=grayscale, seed=args.seed)
                dataset_id = f"folder:{path.resolve()}"
            else:
                from .data import load_image_dataset

                train = load_image_dataset(args.dataset, data_dir=args.data_dir, split="train")
                test = load_image_dataset(train.name, data_dir=args.data_dir, split="test")
                dataset_id = train.name
        except ValueError as err:
            extra = ("; or cifar10, cifar100, toy2d, an .npz / .safetensors file of embeddings or an image folder"
                     if "unknown image data set" in str(err) else "")
            raise SystemExit(f"error: {err}{extra}") from None
        except (TypeError, FileNotFoundError, ImportError, ConnectionError) as err:
            raise SystemExit(f"error: {err}") from None
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
        notes.append(f"- note: {w.message}")
    try:
        encoder = get_encoder(args.encoder)
    except (ValueError, ImportError) as err:
        raise SystemExit(f"error: --encoder {args.encoder}: {err}") from None
    cache = FeatureCache(args.cache_dir)
    feats = []
    for ds in (train, test):
        feats.append(cache.get_or_compute(encoder, ds.images, dataset_id=dataset_id, split=ds.split,
                                          progress=not args.quiet).numpy())
    source = f" from {path.resolve()}" if folder else ""
    notes.append(f"- data: {train.name}{source} ({len(train)} train / {len(test)} test images, "
                 f"{train.n_classes} classes), encoder `{encoder.name}` {encoder.config} -> {feats[0].shape[1]} "
                 "features (standardised)")
    return feats[0], train.labels, feats[1], test.labels, train.name, notes


def run_continual(args) -> int:
    import torch

    from .continual.runner import ContinualConfig, run_experiment
    from .report.continual_report import write_report

    if args.preset == "toy2d":
        args.dataset = "toy2d"
    # defaults per data set: the 2-D toy is tiny (800 points), so smaller batches, more epochs
    toy = args.dataset == "toy2d"
    for name, default, toy_default in (("epochs", 5, 20), ("codebooks", 64, 16),
                                       ("keys", 512, 64), ("head_lr", 1e-3, 1e-2)):
        if getattr(args, name) is None:
            setattr(args, name, toy_default if toy else default)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    x_tr, y_tr, x_te, y_te, name, notes = _continual_data(args)
    x_tr, x_te = np.asarray(x_tr, np.float32), np.asarray(x_te, np.float32)
    if args.batch_size is None:  # small data sets (toy2d, digits) get enough steps to learn
        args.batch_size = 256 if len(x_tr) >= 10_000 else 32
    options = {"num_codebooks": args.codebooks, "keys_per_codebook": args.keys, "dim_key": args.dim_key,
               "topk": args.topk, "key_init": args.key_init, "dkvb_lr": args.dkvb_lr, "head_lr": args.head_lr,
               "buffer_size": args.buffer}
    if name == "toy2d":
        from .data.toy2d import uniform_unit_square

        # the paper's toy: keys fitted on uniform points of the unit square, in the input space
        options.update(keys_from=torch.as_tensor(uniform_unit_square(4096, seed=args.seed)), dim_key=2)
        notes.append("- toy2d: 8 Gaussian classes (std 0.035) in the unit square, 4 tasks of 2 classes; "
                     "DKVB keys fitted on uniform points of the unit square")
    else:  # standardise with training statistics: the same inputs for every method
        mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
        if args.keys_from:
            other = argparse.Namespace(**{**vars(args), "dataset": args.keys_from})
            x_keys, *_rest, keys_name, keys_notes = _continual_data(other)
            x_keys = np.asarray(x_keys, np.float32)
            if x_keys.shape[1] != x_tr.shape[1]:
                raise SystemExit(f"error: --keys-from {args.keys_from} gives {x_keys.shape[1]} features, but the "
                                 f"training data has {x_tr.shape[1]}; expected the same encoder's feature space")
            options["keys_from"] = torch.as_tensor((x_keys - mean) / std)
            notes.append(f"- DKVB keys fitted on the unlabelled training inputs of {keys_name} "
                         f"({len(x_keys)} rows), not on the stream's")
    n_tasks = 4 if name == "toy2d" and args.tasks == 5 else args.tasks
    cfg = ContinualConfig(n_tasks=n_tasks, classes_per_task=args.classes_per_task, epochs=args.epochs,
                          batch_size=args.batch_size, methods=methods, joint=not args.no_joint,
                          seeds=tuple(range(args.seed, args.seed + args.seeds)), eval_every=args.eval_every,
                          options=options)
    if args.tune_lr:
        from .continual.runner import tune_learning_rates

        tuned = tune_learning_rates(x_tr, y_tr, cfg, seed=args.seed)
        for method, res in tuned.items():
            cfg.options[f"{method}_lr"] = res["best"]
            scores = ", ".join(f"{lr:g}: {100 * acc:.1f}%" for lr, acc in res["scores"].items())
            notes.append(f"- {method}: Adam lr {res['best']:g}, chosen for i.i.d. training on a held-out 10% of "
                         f"the training data (validation accuracy {scores})")
            print(f"  {method}: lr {res['best']:g} ({scores})")
    else:
        for method in (m for m in methods if m in ("linear", "mlp", "replay")):
            notes.append(f"- {method}: Adam lr {args.head_lr:g} (not tuned here; --tune-lr tunes it)")
    print(f"continual: {name}, {len(x_tr)} train / {len(x_te)} test, {x_tr.shape[1]} features, "
          f"{n_tasks} tasks, methods {', '.join(methods)}{'' if args.no_joint else ' (+ joint)'}, "
          f"seeds {list(cfg.seeds)}")
    regions, extra = {}, {}
    hook = None
    if name == "toy2d":
        grid = np.stack(np.meshgrid(np.linspace(0, 1, 120), np.linspace(0, 1, 120)), -1).reshape(-1, 2)
        grid_t = torch.as_tensor(grid, dtype=torch.float32)

        def hook(method, seed, t, learner):
            if seed == cfg.seeds[0] and method in ("dkvb", "linear", "mlp"):
                regions.setdefault(method, []).append(learner.predict(grid_t).numpy().reshape(120, 120))
    t0 = time.perf_counter()
    try:
        results = run_experiment(x_tr, y_tr, x_te, y_te, cfg, progress=not args.quiet, on_task_end=hook)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    out = Path(args.out or f"runs/continual-{name}")
    if regions:
        from .continual.streams import ClassIncrementalStream
        from .report.continual_plots import plot_decision_regions

        stream = ClassIncrementalStream(np.asarray(y_tr), n_tasks, args.classes_per_task, class_order="seeded",
                                        seed=cfg.seeds[0])
        points = [(x_tr[stream.task_indices(t)], np.asarray(y_tr)[stream.task_indices(t)]) for t in range(n_tasks)]
        extra["Decision regions after each task (seed 0; points: that task's training data)"] = \
            plot_decision_regions(regions, (0.0, 1.0, 0.0, 1.0), points, out / "decision_regions.png")
    notes.append(f"- command: `bottlenecks {' '.join(sys.argv[1:])}`; total time {time.perf_counter() - t0:.0f} s")
    report = write_report(results, out, title=f"Class-incremental {name}", notes=notes, extra_images=extra)
    from .report.continual_report import table

    print(table(results))
    print(f"report: {report}")
    return 0


def _print_summary(result: dict, out: Path, keys: list[str]) -> None:
    """Print the headline numbers of a library run and where its report is."""
    for key in keys:
        if key in result:
            print(f"  {key}: {result[key]}")
    print(f"report: {out / 'report.md'}")


def _codebook_parser(sub) -> None:
    p = sub.add_parser("codebook", help="codebook features inside transformers (Tamkin et al. 2023)")
    cmds = p.add_subparsers(dest="codebook_command", metavar="<codebook command>", required=True)
    t = cmds.add_parser("tokfsm", help="train GPT-NeoX with and without codebooks on TokFSM; report codes vs states",
                        description="Reproduce the TokFSM experiment: a 100-state finite-state machine written as "
                                    "2-digit tokens, a 4-layer GPT-NeoX trained from scratch with and without "
                                    "codebooks; transition accuracy, code/state precision and recall against the "
                                    "best neurons, dead codes, steering success. CPU defaults take minutes; the "
                                    "paper's size is --steps 20000 --batch-size 512 on a GPU.")
    t.add_argument("--steps", type=int, default=None, help="training steps per model (default 600; paper 20000)")
    t.add_argument("--batch-size", type=int, default=None, help="sequences per step (default 8; paper 512)")
    t.add_argument("--paper-size", action="store_true", help="the paper's budget: 20000 steps of 512 (a GPU job)")
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--num-codes", type=int, default=1000, help="codes per codebook (default 1000, as the paper)")
    t.add_argument("-k", type=int, default=1, help="codes summed per attention head (default 1)")
    t.add_argument("--mlp-k", type=int, default=1, help="codes summed per MLP codebook (default 1)")
    t.add_argument("--code-gradient", action="store_true",
                   help="the chosen codes also get the downstream gradient (the public code's aeloss)")
    t.add_argument("--codebook-warmup", type=float, default=0.25,
                   help="fraction of the steps each codebook model trains with its codebooks bypassed, before "
                        "k-means fits them to the warmed-up activations (default 0.25; 0 = codebooks from step 0)")
    t.add_argument("--mlp-commitment", type=float, default=0.25,
                   help="commitment-loss weight of the MLP codebooks (default 0.25; without it the MLP outputs "
                        "grow without bound)")
    t.add_argument("--scale", default="code", choices=["code", "running", "learned", "match", "none"],
                   help="codebook output scale (default code: a learned norm per code, as the public code)")
    t.add_argument("--models", default="original,codebook_attn,codebook_attn_raw,codebook_attn_mlp",
                   help="comma list from original (required), codebook_attn, codebook_attn_raw (no dead-code "
                        "re-seeding), codebook_attn_mlp")
    t.add_argument("--eval-sequences", type=int, default=4096,
                   help="held-out sequences for transition accuracy (4,096: about 0.3 points of paired standard "
                        "error on a gap to the original)")
    t.add_argument("--analysis-sequences", type=int, default=512, help="held-out sequences for code analysis")
    t.add_argument("--prompts-per-state", type=int, default=10, help="steering prompts per FSM state")
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 1 on CPU, where small ops run faster on one thread)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/codebook-tokfsm")
    t.add_argument("--reuse", action="store_true",
                   help="load the models saved in OUT/models by an earlier run with the same training settings "
                        "instead of training again (re-run the analysis only)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=run_codebook_tokfsm)


def run_codebook_tokfsm(args) -> int:
    from .codebook.experiment import PAPER_SIZE, run_tokfsm

    size = dict(PAPER_SIZE) if args.paper_size else {}
    if args.steps is not None:
        size["steps"] = args.steps
    if args.batch_size is not None:
        size["batch_size"] = args.batch_size
    threads = args.threads if args.threads is not None else (1 if args.device == "cpu" else None)
    try:
        result = run_tokfsm(args.out, seed=args.seed, lr=args.lr, num_codes=args.num_codes, k=args.k,
                            mlp_k=args.mlp_k, scale=args.scale, code_gradient=args.code_gradient,
                            codebook_warmup=args.codebook_warmup, mlp_commitment=args.mlp_commitment,
                            eval_sequences=args.eval_sequences,
                            analysis_sequences=args.analysis_sequences, prompts_per_state=args.prompts_per_state,
                            models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
                            device=args.device, num_threads=threads, reuse=args.reuse, quiet=args.quiet, **size)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    for name, m in result.get("models", {}).items():
        acc = m.get("transition_accuracy")
        print(f"  {name}: transition accuracy {100 * acc:.1f}%" if acc is not None else f"  {name}")
    _print_summary(result, Path(args.out), [])
    return 0


def _info_parser(sub) -> None:
    p = sub.add_parser("info", help="information bottleneck: information planes and MI estimates")
    cmds = p.add_subparsers(dest="info_command", metavar="<info command>", required=True)
    t = cmds.add_parser("plane", help="information plane of tanh / ReLU networks on the 12-bit data set",
                        description="Train the Shwartz-Ziv & Tishby 12-bit network(s) (4096 inputs, "
                                    "H(Y) = 0.99916 bits) and plot I(X;T) and I(T;Y) of every layer over training.")
    t.add_argument("--activation", default="both", choices=["tanh", "relu", "both"])
    t.add_argument("--epochs", type=int, default=1500)
    t.add_argument("--estimator", default="binning", help="binning (default, as the paper) or a k-NN estimator")
    t.add_argument("--bins", type=int, default=30)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/info-plane")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=run_info_plane_cmd)
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
    m.set_defaults(func=run_info_mi_cmd)


def run_info_plane_cmd(args) -> int:
    from .info.reproduce import run_info_plane

    try:
        run_info_plane(args.out, activation=args.activation, epochs=args.epochs, seed=args.seed, quiet=args.quiet,
                       estimator=args.estimator, bins=args.bins, lr=args.lr)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    _print_summary({}, Path(args.out), [])
    return 0


def _concepts_parser(sub) -> None:
    p = sub.add_parser("concepts", help="concept bottleneck models: demo, concept selection, CUB check")
    cmds = p.add_subparsers(dest="concepts_command", metavar="<concepts command>", required=True)
    d = cmds.add_parser("demo", help="PCBM on generated concept shapes: accuracy, interventions, a global edit",
                        description="Generated shapes with colour, shape, size and texture concepts and a spurious "
                                    "background tint; CAVs on frozen features, a sparse GLM head, the black-box "
                                    "probe, intervention curves and the edit that removes the spurious concept.")
    d.add_argument("--encoder", default="scattering", choices=["scattering", "pixels"])
    d.add_argument("--n-train", type=int, default=2000, help="images for concept annotation and for training")
    d.add_argument("--n-test", type=int, default=1000, help="images in each of the test and shifted splits")
    d.add_argument("--image-size", type=int, default=16, help="side of the generated images (default 16)")
    d.add_argument("--threads", type=int, default=1,
                   help="torch threads during the run (default 1: many small ops; the numbers do not depend on it)")
    d.add_argument("--no-compare", action="store_true", help="skip the other sources and heads")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default="runs/concepts-demo")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=run_concepts_demo_cmd)
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
    s.set_defaults(func=run_concepts_select_cmd)
    c = cmds.add_parser("cub", help="check a CUB-200-2011 folder and its 112-attribute filtering")
    c.add_argument("root", help="the CUB_200_2011 folder (images/, images.txt, attributes/ ...)")
    c.add_argument("--min-classes", type=int, default=10,
                   help="keep attributes on (by class majority vote) for at least this many classes (default 10)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default=None)
    c.set_defaults(func=run_concepts_cub_cmd)


def run_concepts_demo_cmd(args) -> int:
    from .concepts.demo import run_concepts_demo

    try:
        result = run_concepts_demo(args.out, seed=args.seed, n_train=args.n_train, encoder=args.encoder,
                                   n_test=args.n_test, image_size=args.image_size, compare=not args.no_compare,
                                   threads=args.threads, quiet=args.quiet)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    for target, met in result.get("targets", {}).items():
        print(f"  target {target}: {'met' if met else 'NOT met'}")
    _print_summary(result, Path(args.out), [])
    return 0


def run_concepts_select_cmd(args) -> int:
    from .concepts.selection import run_concept_selection

    if not Path(args.concepts).exists():
        raise SystemExit(f"error: {args.concepts}: no such file; expected a JSON file {{class: [concepts]}}")
    try:
        result = run_concept_selection(args.concepts, k_per_class=args.per_class, encoder=args.text_encoder,
                                       image_embeddings=args.images, out=args.out, seed=args.seed,
                                       quiet=args.quiet)
    except (ValueError, ImportError) as err:
        raise SystemExit(f"error: {err}") from None
    for name, chosen in result["selected"].items():
        print(f"  {name}: {', '.join(chosen)}")
    print(f"{result['n_candidates']} candidates, {result['n_after_filters']} after filters, "
          f"{result['n_selected']} selected; written to {Path(args.out) / 'selected_concepts.json'}")
    return 0


def run_concepts_cub_cmd(args) -> int:
    from .data.cub import describe_cub

    try:
        summary = describe_cub(args.root, min_classes=args.min_classes, out=args.out, seed=args.seed)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"CUB at {summary['root']}: {summary['n_train']} train / {summary['n_test']} test images, "
          f"{summary['n_classes']} classes, {summary['n_attributes']} of {summary['n_attributes_total']} "
          f"attributes kept")
    return 0


def run_info_mi_cmd(args) -> int:
    from .info import mutual_information

    path = Path(args.data)
    if not path.exists():
        raise SystemExit(f"error: {path}: no such file; expected an .npz with arrays '{args.x_key}' and "
                         f"'{args.y_key}'")
    with np.load(path) as f:
        missing = [key for key in (args.x_key, args.y_key) if key not in f]
        if missing:
            raise SystemExit(f"error: {path} has arrays {sorted(f.files)}; expected {missing[0]!r}")
        x, y = f[args.x_key], f[args.y_key]
    try:
        est = mutual_information(x, y, method=args.method, k=args.k, units=args.units, bins=args.bins,
                                 ci=args.ci, n_resamples=args.n_resamples, seed=args.seed)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if args.ci is None:
        print(f"I(X;Y) = {est:.6f} {args.units} ({args.method}, n={len(x)})")
    else:
        print(f"I(X;Y) = {est.value:.6f} {args.units} ({args.method}, n={len(x)}), {100 * args.ci:g}% interval "
              f"[{est.low:.6f}, {est.high:.6f}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="bottlenecks",
                                     description="Put bottlenecks into neural networks, train them and look inside.")
    parser.add_argument("--version", action="version", version=f"bottlenecks {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    _kmeans_parser(sub)
    _continual_parser(sub)
    _codebook_parser(sub)
    _info_parser(sub)
    _concepts_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
