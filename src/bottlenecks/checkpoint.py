"""One save layout for every model: a folder holding ``model.safetensors`` (its tensors) and
``config.json`` (what rebuilds it), as Hugging Face models are saved::

    model.save_pretrained("runs/dkvb")                     # creates the folder if needed
    DiscreteKeyValueBottleneck.from_pretrained("runs/dkvb")

``config.json`` is ``{"class": ..., "format": 1, "config": {constructor arguments}, "state": {...}}``
("state": JSON-able learned state such as an edit log, and the module's train/eval mode). Loading
checks the saved class, rebuilds the model from ``config`` and loads every tensor strictly (no
tensor missing, none left over, same shapes; dtypes as saved), so a load is exact or fails. A
truncated or edited file fails with ``FILE: corrupt or not a <Model> checkpoint (why)``.

Why not huggingface_hub's ``PyTorchModelHubMixin`` (same folder layout): it loads with
``strict=False`` by default (a file missing tensors loads silently), takes the config from the
constructor's arguments at construction (several models here are shaped by ``fit``, or take
modules as arguments), parses ``config.json`` itself (a raw ``JSONDecodeError`` without the file
name), treats a mistyped local folder as a Hub repository id (a network call), prints to stdout
on every load and slows ``import bottlenecks`` noticeably. Overriding all of that would leave
only ``push_to_hub``; the folders written here upload as they are
(``huggingface_hub.upload_folder``), and a downloaded snapshot loads with ``from_pretrained``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = 1
_EXTRA = "__extra__."  # prefix of tensors that are not in the state dict (e.g. a generator's state)

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "CheckpointError", "Checkpointable", "read_checkpoint",
           "write_checkpoint", "save_module"]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as the model asked for (message starts with the file)."""


def corrupt(file, model: str, why: str) -> CheckpointError:
    return CheckpointError(f"{file}: corrupt or not a {model} checkpoint ({why})")


def _atomic_write(target: Path, write) -> None:
    """``write(tmp_path)`` then rename over ``target``: an interrupted save never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_checkpoint(directory, model: str, config: dict, tensors: dict[str, torch.Tensor],
                     state: dict | None = None) -> Path:
    """Write ``directory/model.safetensors`` (contiguous CPU copies of ``tensors``) and
    ``directory/config.json``; the folder is created if missing. Returns the folder."""
    from safetensors.torch import save_file

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory}: expected a folder to save the {model} into, found a file")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{directory}: cannot create the folder to save the {model} into ({err.strerror})") from err
    meta = {"class": model, "format": FORMAT, "config": config, "state": state or {}}
    text = json.dumps(meta, indent=2)  # fails before anything is written if config is not JSON-able
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write(directory / WEIGHTS_NAME,
                  lambda tmp: save_file(cpu, tmp, metadata={"class": model, "format": str(FORMAT)}))
    _atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return directory


def read_config(directory, models: str | tuple[str, ...]) -> dict:
    """``config.json`` of a checkpoint folder, checked: valid JSON, our format, one of the ``models``."""
    models = (models,) if isinstance(models, str) else tuple(models)
    want = " or ".join(models)
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such folder (expected a {want} checkpoint "
                                "written by save_pretrained)")
    if not directory.is_dir():
        raise corrupt(directory, want, "expected a folder with config.json and model.safetensors, got a file")
    file = directory / CONFIG_NAME
    if not file.is_file():
        raise corrupt(directory, want, f"no {CONFIG_NAME} in the folder")
    try:
        meta = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise corrupt(file, want, f"invalid JSON: {err}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "class" not in meta:
        raise corrupt(file, want, "no 'class' and 'config' entries")
    if meta.get("format") != FORMAT:
        raise corrupt(file, want, f"format {meta.get('format')!r}, this version reads format {FORMAT}")
    if meta["class"] not in models:
        raise corrupt(file, want, f"saved class {meta['class']!r}")
    meta.setdefault("state", {})
    return meta


def read_tensors(file, model: str) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU; any read error names the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(file)
    if not file.is_file():
        raise corrupt(file.parent, model, f"no {file.name} in the folder")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise corrupt(file, model, f"unreadable safetensors: {err}") from None


def read_checkpoint(directory, models: str | tuple[str, ...]) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(meta, tensors)`` of a folder :func:`write_checkpoint` wrote; ``meta['class']`` is one of ``models``."""
    meta = read_config(directory, models)
    return meta, read_tensors(Path(directory) / WEIGHTS_NAME, meta["class"])


def load_state(module: nn.Module, tensors: dict[str, torch.Tensor], file, model: str) -> None:
    """``module.load_state_dict(tensors)`` strictly, keeping the saved dtypes (``assign``), with a
    message naming the file and the tensors that do not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in tensors and tensors[k].shape != own[k].shape]
    problems = ([f"missing tensors {missing}"] if missing else []) + \
        ([f"unexpected tensors {unexpected}"] if unexpected else []) + \
        ([f"shapes differ from its config: {', '.join(wrong)}"] if wrong else [])
    if problems:
        raise corrupt(file, model, "; ".join(problems))
    module.load_state_dict(tensors, strict=True, assign=True)


class Checkpointable:
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` whose ``config()`` returns
    its constructor's keyword arguments (JSON-able). Learned state outside the state dict goes
    through ``_checkpoint_extra`` (JSON, tensors) and ``_restore_extra``."""

    def config(self) -> dict:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _checkpoint_extra(self) -> tuple[dict, dict[str, torch.Tensor]]:
        return {}, {}

    def _checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def _restore_extra(self, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        pass

    @classmethod
    def _from_config(cls, config: dict):
        return cls(**config)

    @classmethod
    def _loadable(cls) -> dict[str, type]:
        """Saved class names this class may load: itself and its subclasses."""
        found, todo = {}, [cls]
        while todo:
            c = todo.pop()
            if not c.__name__.startswith("_"):
                found[c.__name__] = c
            todo.extend(c.__subclasses__())
        return found

    def save_pretrained(self, directory) -> Path:
        """Write ``directory/model.safetensors`` + ``directory/config.json`` (folder created if
        missing); :meth:`from_pretrained` rebuilds the model exactly. Returns the folder."""
        state, extra = self._checkpoint_extra()
        tensors = dict(self._checkpoint_tensors())
        tensors.update({_EXTRA + k: v for k, v in extra.items()})
        return write_checkpoint(directory, type(self).__name__, self.config(), tensors,
                                {"training": bool(self.training), **state})

    @classmethod
    def from_pretrained(cls, directory, device=None):
        """The model :meth:`save_pretrained` wrote to ``directory``: same class (a subclass's file
        is refused by a sibling class), config, tensors (dtypes included), extra state and
        train/eval mode. ``device``: where to put it (default: the CPU)."""
        classes = cls._loadable()
        meta, tensors = read_checkpoint(directory, tuple(classes))
        name, file = meta["class"], Path(directory) / CONFIG_NAME
        try:
            model = classes[name]._from_config(dict(meta["config"]))
        except (TypeError, ValueError, KeyError) as err:
            raise corrupt(file, name, f"its config is rejected: {err}") from None
        extra = {k[len(_EXTRA):]: tensors.pop(k) for k in list(tensors) if k.startswith(_EXTRA)}
        load_state(model, tensors, Path(directory) / WEIGHTS_NAME, name)
        state = dict(meta["state"])
        model.train(bool(state.pop("training", True)))
        try:
            model._restore_extra(state, extra)
        except (TypeError, ValueError, KeyError, RuntimeError) as err:
            raise corrupt(Path(directory) / WEIGHTS_NAME, name, f"its extra state is rejected: {err!r}") from None
        return model.to(device) if device is not None else model


def save_module(module: nn.Module, path, meta: dict, indent: int | None = 2,
                extra: dict[str, torch.Tensor] | None = None) -> None:
    """The earlier layout, kept for study artefacts (TokFSM models): ``module.state_dict()`` (plus
    ``extra`` tensors) to ``path.safetensors`` and ``meta`` to ``path.json``; the parent folder is
    created and ``path``'s own suffix, if any, is replaced. Models use :meth:`Checkpointable.save_pretrained`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = dict(module.state_dict(), **(extra or {}))
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path.with_suffix(".safetensors")))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=indent))


def read_legacy_pair(path, models: str | tuple[str, ...]) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(meta, tensors)`` of the earlier ``path.json`` + ``path.safetensors`` layout (codebook
    layers, EnergyCBM), checked like :func:`read_checkpoint`: ``meta`` is the JSON with its
    ``class`` entry, which must be one of ``models``."""
    models = (models,) if isinstance(models, str) else tuple(models)
    want = " or ".join(models)
    path = Path(path)
    file = path.with_suffix(".json")
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint folder with {CONFIG_NAME} there, and no {file.name} of the "
                                f"earlier layout (expected a {want} written by save_pretrained)")
    try:
        meta = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise corrupt(file, want, f"invalid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("class") not in models:
        got = meta.get("class") if isinstance(meta, dict) else type(meta).__name__
        raise corrupt(file, want, f"saved class {got!r}")
    return meta, read_tensors(path.with_suffix(".safetensors"), meta["class"])
