"""Codebooks inside any torch model, by forward hooks (the model's modules are never copied or
replaced): ``wrap_codebook`` -> train / read / steer -> ``unwrap``.

Sites of Hugging Face GPT-2, GPT-NeoX and Llama-family models (layer ``i``):

    'attn'        output of the attention block (after its output projection)
    'attn_heads'  input of the attention's output projection: the concatenated heads, one
                  codebook per head (GroupCodebookLayer)
    'mlp'         output of the MLP block
    'block'       output of the whole transformer layer (the residual stream)

Any other site string is a regular expression matched (in full) against the names of
``model.named_modules()``; the module's output (the first element of a tuple output) passes
through the codebook. The codebook modules are registered as a child ``codebook`` of the
hooked module, so ``model.parameters()``, ``model.to`` and ``state_dict`` see them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .layer import CodebookLayer, GroupCodebookLayer, _Codebooks

__all__ = ["ARCHITECTURES", "CodebookWrap", "SITES", "bypass_codebooks", "codebook_loss", "codebook_sites",
           "record_codes", "steer", "unwrap", "wrap_codebook"]

SITES = ("attn", "attn_heads", "mlp", "block")
# where each family keeps its layers, and each site's module relative to a layer
ARCHITECTURES = {
    "gpt_neox": {"layers": ("gpt_neox.layers", "layers"), "attn": "attention", "attn_heads": "attention.dense",
                 "mlp": "mlp"},
    "gpt2": {"layers": ("transformer.h", "h"), "attn": "attn", "attn_heads": "attn.c_proj", "mlp": "mlp"},
    "llama": {"layers": ("model.layers", "layers"), "attn": "self_attn", "attn_heads": "self_attn.o_proj",
              "mlp": "mlp"},
}
_ATTR = "_codebook_wrap"


class CodebookWrap:
    """The codebooks hooked into a model: ``layers`` maps a site name (``'layers.0.attn_heads'``,
    or the module name for pattern sites) to its codebook layer."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers: dict[str, _Codebooks] = {}
        self._handles: list = []
        self._owners: dict[str, nn.Module] = {}
        self._losses: dict[str, torch.Tensor] = {}  # each site's codebook loss of its last forward
        self.bypassed = False  # True inside bypass_codebooks: the hooks pass activations through

    def __repr__(self) -> str:
        return f"CodebookWrap({len(self.layers)} sites: {list(self.layers)})"

    def loss(self) -> torch.Tensor:
        """Sum of the codebook losses of the last training forward of every site (0 when bypassed)."""
        if self.bypassed:
            return torch.zeros(())
        losses = list(self._losses.values())
        return torch.stack(losses).sum() if losses else torch.zeros(())

    def reset_stats(self) -> None:
        for layer in self.layers.values():
            layer.reset_stats()

    def stats(self) -> dict[str, dict]:
        """Per site: dead fraction, perplexity (mean over codebooks) and output/input norm ratio."""
        return {name: {"dead_fraction": float(layer.dead_fraction().mean()),
                       "perplexity": float(layer.perplexity().mean()),
                       "norm_ratio": layer.norm_ratio(),
                       "replaced": int(layer.replaced)}
                for name, layer in self.layers.items()}

    def remove(self) -> None:
        """Remove every hook and codebook module: the model is as before ``wrap_codebook``."""
        for h in self._handles:
            h.remove()
        for owner in self._owners.values():
            if "codebook" in owner._modules:
                del owner._modules["codebook"]
        self._handles.clear()
        self.layers.clear()
        self._owners.clear()
        if getattr(self.model, _ATTR, None) is self:
            delattr(self.model, _ATTR)


def _architecture(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """``(family, layer list)`` for a known transformer, else None."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    modules = dict(model.named_modules())
    for family, spec in ARCHITECTURES.items():
        for path in spec["layers"]:
            layers = modules.get(path)
            if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
                continue
            site = spec["attn_heads"]
            if site in dict(layers[0].named_modules()) and (model_type in (None, family)
                                                             or family == "llama"):
                return family, layers
    return None


def _num_heads(model: nn.Module, attn: nn.Module) -> int:
    for owner in (attn, getattr(model, "config", None)):
        for name in ("num_heads", "num_attention_heads", "n_head"):
            v = getattr(owner, name, None)
            if isinstance(v, int) and v > 0:
                return v
    raise ValueError("could not find the number of attention heads (config.num_attention_heads)")


def _feature_dim(module: nn.Module, pre: bool) -> int | None:
    """Input (``pre``) or output features of a Linear / GPT-2 Conv1D; None when unknown."""
    w = getattr(module, "weight", None)
    if isinstance(module, nn.Linear):
        return module.in_features if pre else module.out_features
    if type(module).__name__ == "Conv1D" and w is not None:  # GPT-2 stores (in, out)
        return w.shape[0] if pre else w.shape[1]
    return None


def _replace_output(output, new):
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple):
        return (new,) + tuple(output[1:])
    if isinstance(output, list):
        return [new] + list(output[1:])
    raise TypeError(f"cannot put a codebook on a module whose output is {type(output).__name__}; "
                    "expected a tensor or a tuple whose first element is one")


def _first(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


def _output_hook(name: str, layer: _Codebooks, wrap: CodebookWrap):
    def hook(module, args, output):
        if wrap.bypassed:
            return None
        out, _, wrap._losses[name] = layer(_first(output))
        return _replace_output(output, out)
    return hook


def _input_hook(name: str, layer: _Codebooks, wrap: CodebookWrap):
    def hook(module, args):
        if wrap.bypassed:
            return None
        out, _, wrap._losses[name] = layer(args[0])
        return (out,) + tuple(args[1:])
    return hook


def wrap_codebook(model: nn.Module, sites: str | Sequence[str] = ("attn_heads",), layers: Iterable[int] | None = None,
                  *, num_codes: int = 1000, k: int = 1, dim: int | None = None, num_codebooks: int | None = None,
                  num_groups: int | None = None, **codebook_kwargs) -> CodebookWrap:
    """Put codebooks at ``sites`` of ``model`` with forward hooks -> :class:`CodebookWrap`.

    Args:
        model: a Hugging Face GPT-2 / GPT-NeoX / Llama-family model (sites from ``SITES``) or any
            ``nn.Module`` (sites are module-name regular expressions).
        sites: site names or patterns.
        layers: transformer layer indices for named sites (default: all).
        num_codes, k: codes per codebook and codes chosen per token.
        dim: features of a pattern site's output when the module is not a Linear / Conv1D.
        num_codebooks: codebooks per pattern site (default 1); ``'attn_heads'`` always gets one per head.
            ``num_groups`` is its earlier name, still accepted.
        codebook_kwargs: passed to :class:`CodebookLayer` / :class:`GroupCodebookLayer`
            (``metric``, ``scale``, ``replace_dead``, ``seed``, ...). Each site gets ``seed + index``.

    Wrapping a model twice adds to the same :class:`CodebookWrap`; a site already wrapped is an error.
    The codebooks go to the device of the module they wrap and stay float32 under a bfloat16 /
    float16 model (searched and trained in float32, outputs handed back in the activation's dtype);
    ``model.to(dtype)`` after wrapping converts them too.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if num_groups is not None:
        if num_codebooks is not None and num_codebooks != num_groups:
            raise ValueError(f"num_groups={num_groups} and num_codebooks={num_codebooks}: give one "
                             "(num_groups is the earlier name of num_codebooks)")
        num_codebooks = num_groups
    sites = (sites,) if isinstance(sites, str) else tuple(sites)
    if not sites:
        raise ValueError("sites: expected at least one site")
    wrap = getattr(model, _ATTR, None) or CodebookWrap(model)
    arch = _architecture(model)
    modules = dict(model.named_modules())
    targets: list[tuple[str, nn.Module, bool, int | None, int]] = []  # name, module, pre-hook, dim, groups
    for site in sites:
        if site in SITES:
            if arch is None:
                raise ValueError(f"site {site!r} needs a GPT-2, GPT-NeoX or Llama-family model; for other models "
                                 "give module-name patterns (see model.named_modules())")
            family, layer_list = arch
            idx = list(range(len(layer_list))) if layers is None else [int(i) for i in layers]
            bad = [i for i in idx if not 0 <= i < len(layer_list)]
            if bad:
                raise ValueError(f"layers {bad} out of range: the model has {len(layer_list)} layers")
            spec = ARCHITECTURES[family]
            hidden = _hidden_size(model)
            for i in idx:
                block = layer_list[i]
                if site == "block":
                    targets.append((f"layers.{i}.block", block, False, hidden, 1))
                    continue
                mod = dict(block.named_modules())[spec[site]]
                if site == "attn_heads":
                    heads = _num_heads(model, dict(block.named_modules())[spec["attn"]])
                    targets.append((f"layers.{i}.{site}", mod, True, _feature_dim(mod, True), heads))
                else:
                    targets.append((f"layers.{i}.{site}", mod, False, hidden, 1))
        else:
            try:
                pattern = re.compile(site)
            except re.error as err:
                raise ValueError(f"unknown site {site!r}: expected one of {list(SITES)} or a valid regular "
                                 f"expression over module names ({err})") from None
            found = [(n, m) for n, m in modules.items() if n and pattern.fullmatch(n) and "codebook" not in n]
            if not found:
                raise ValueError(f"unknown site {site!r}: no module name matches it; expected one of {list(SITES)} "
                                 f"(for GPT-2 / GPT-NeoX / Llama) or a pattern over names such as "
                                 f"{[n for n in modules if n][:6]}")
            for n, m in found:
                targets.append((n, m, False, dim or _feature_dim(m, False), num_codebooks or 1))
    seed = int(codebook_kwargs.pop("seed", 0))
    for name, module, pre, d, groups in targets:
        if name in wrap.layers:
            raise ValueError(f"site {name!r} already has a codebook; unwrap(model) first")
        if d is None:
            raise ValueError(f"site {name!r}: cannot tell its feature size; pass dim=")
        kwargs = dict(codebook_kwargs, seed=seed + len(wrap.layers))  # one seed per site
        if groups > 1:
            layer = GroupCodebookLayer(d, groups, num_codes, k, **kwargs)
        else:
            layer = CodebookLayer(d, num_codes, k, **kwargs)
        param = next(module.parameters(), None)
        if param is not None:
            layer.to(device=param.device)
        module.add_module("codebook", layer)
        handle = (module.register_forward_pre_hook(_input_hook(name, layer, wrap)) if pre
                  else module.register_forward_hook(_output_hook(name, layer, wrap)))
        wrap.layers[name] = layer
        wrap._owners[name] = module
        wrap._handles.append(handle)
    object.__setattr__(model, _ATTR, wrap)
    return wrap


def _hidden_size(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    for attr in ("hidden_size", "n_embd", "d_model"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int):
            return v
    return None


def codebook_sites(model: nn.Module) -> dict[str, _Codebooks]:
    """The codebook layers of a wrapped model, by site name (empty when not wrapped)."""
    wrap = getattr(model, _ATTR, None)
    return dict(wrap.layers) if wrap is not None else {}


def codebook_loss(model: nn.Module) -> torch.Tensor:
    """Sum of the codebook losses of the last training forward (0 when not wrapped)."""
    wrap = getattr(model, _ATTR, None)
    return wrap.loss() if wrap is not None else torch.zeros(())


@contextmanager
def bypass_codebooks(model: nn.Module):
    """Inside the block the wrapped model runs as if it had no codebooks: activations pass through
    unchanged, no code is chosen, no statistic or codebook loss is updated. Used to warm a model
    up before its codebooks start (``train_lm(codebook_warmup=...)``); codes not yet initialised
    are then fitted by k-means on the activations of the first training batch after the block."""
    wrap = getattr(model, _ATTR, None)
    if wrap is None:
        raise ValueError("the model has no codebooks: call wrap_codebook(model, ...) first")
    before = wrap.bypassed
    wrap.bypassed = True
    try:
        yield model
    finally:
        wrap.bypassed = before


def unwrap(model: nn.Module) -> nn.Module:
    """Remove every codebook hook and module from ``model`` (in place); returns the model."""
    wrap = getattr(model, _ATTR, None)
    if wrap is not None:
        wrap.remove()
    return model


def _select(model: nn.Module, sites) -> dict[str, _Codebooks]:
    layers = codebook_sites(model)
    if not layers:
        raise ValueError("the model has no codebooks: call wrap_codebook(model, ...) first")
    if sites is None:
        return layers
    sites = (sites,) if isinstance(sites, str) else tuple(sites)
    unknown = [s for s in sites if s not in layers]
    if unknown:
        raise ValueError(f"unknown codebook sites {unknown}: expected some of {list(layers)}")
    return {s: layers[s] for s in sites}


class CodeRecord:
    """Code ids recorded per site: ``codes[site]`` is a list with one tensor per forward call,
    ``(batch, seq, k)`` for one codebook or ``(batch, seq, groups, k)`` per head."""

    def __init__(self):
        self.codes: dict[str, list[torch.Tensor]] = {}

    def __getitem__(self, site: str) -> torch.Tensor:
        """The ids of the site's forward calls joined along the sequence axis (as in cached generation)."""
        parts = self.codes[site]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def keys(self):
        return self.codes.keys()


@contextmanager
def record_codes(model: nn.Module, sites: str | Sequence[str] | None = None):
    """Record the code ids chosen at every (or the given) site per token while inside the block.

    >>> with record_codes(model) as rec:
    ...     model(input_ids)
    >>> rec["layers.0.attn_heads"].shape   # (batch, seq, heads, k)
    """
    rec = CodeRecord()
    handles = []
    for name, layer in _select(model, sites).items():
        rec.codes[name] = []

        def hook(module, args, output, name=name):
            rec.codes[name].append(output[1].detach().cpu())
        handles.append(layer.register_forward_hook(hook))
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


@contextmanager
def steer(model: nn.Module, codes: dict, strength: float = 1.0, *, mode: str = "add", positions=None):
    """Activate codes while inside the block: ``codes`` maps a site name to its code ids (an int or
    list for a one-codebook site, ``{head: ids}`` for a per-head site).

    ``mode='add'`` adds ``strength`` times the codes' output to the layer's output (the codes the
    input chose stay); ``mode='replace'`` interpolates from the chosen codes' output to the
    steering codes' (``strength=1`` overwrites it, as the paper's steering does). ``positions``:
    ``None`` (every token), ``'last'`` (the newest token of each forward call: use it with cached
    generation), an int, a slice or ints indexing the sequence axis of each forward call.
    Blocks nest: different codes at different positions stack.
    """
    layers = _select(model, list(codes))
    entries = []
    try:
        for name, ids in codes.items():
            entries.append((layers[name], layers[name].set_steering(ids, strength=strength, mode=mode,
                                                                      positions=positions)))
        yield model
    finally:
        for layer, entry in entries:
            layer.clear_steering(entry)
