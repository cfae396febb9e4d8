"""ESPnet's Trainer, made safe to kill at any moment: a re-run loses at most the current epoch.

At the end of every epoch ESPnet's ``Trainer.run`` writes, in place and in this order,
``checkpoint.pth`` (model, optimizers, schedulers, grad scaler, reporter), ``<N>epoch.pth`` (model
only), the links ``latest.pth`` and ``<phase>.<key>.best.pth`` -> ``<N>epoch.pth``, and then
removes the epoch files outside the n-best. A kill during the first write leaves a truncated
``checkpoint.pth`` on which every ``--resume true`` run fails; a kill between the first two leaves
best-model links to an epoch file that is never written.

:class:`CrashSafeTrainer` (the ``trainer`` of our tasks) closes both gaps:

* every ``torch.save`` to a path by ESPnet's trainer (and its n-best averaging) writes
  ``<path>.tmp`` and renames it into place, so a kill leaves the previous file whole
  (:func:`atomic_saves_in`); the rest of the process keeps torch's own ``torch.save``;
* before ESPnet resumes, :func:`prepare_resume` repairs what an interrupted epoch end left:
  the epoch file that ``checkpoint.pth`` records and the links ESPnet makes for it. A
  ``checkpoint.pth`` that cannot be deserialised (cut short before writes were atomic) is kept as
  ``checkpoint.pth.corrupt`` and replaced by one built from the newest readable ``<N>epoch.pth``
  (the model and the epoch count only), or removed when there is none (training restarts).

It also writes the n-best averages (``<phase>.<key>.ave_<n>best.pth``, ``--inference_model
valid.loss.ave.pth``) again, one criterion at a time (:func:`average_each_criterion`): ESPnet
202511 averages every criterion in one call that reuses the first loaded epoch's state dict as its
sum, so every criterion after the first averages weights already summed for another.
"""

import contextlib
import errno
import logging
import os
import pickle
import re
import types
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence

import espnet2.main_funcs.average_nbest_models
import espnet2.train.trainer
import torch
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from espnet2.main_funcs.average_nbest_models import average_nbest_models
from espnet2.schedulers.abs_scheduler import AbsScheduler
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import Reporter
from espnet2.train.trainer import Trainer, TrainerOptions

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pth"
EPOCH_FILE = re.compile(r"(\d+)epoch\.pth")


def atomic_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """``torch.save(obj, f)`` that writes ``f.tmp`` and renames it to ``f``.

    A kill or an exception during the write leaves ``f`` as it was (the temporary file is removed
    on an exception). File objects are written as they are.
    """
    if not isinstance(f, (str, os.PathLike)):
        torch.save(obj, f, *args, **kwargs)
        return
    temporary = f"{os.fspath(f)}.tmp"
    try:
        torch.save(obj, temporary, *args, **kwargs)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    os.replace(temporary, f)


class _TorchSavingAtomically(types.ModuleType):
    """``torch`` as a patched module sees it: ``save`` is :func:`atomic_save`, the rest is torch's."""

    save = staticmethod(atomic_save)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


# ESPnet's modules that write a training's files: Trainer.run's checkpoint.pth and <N>epoch.pth,
# and the n-best averages it writes at the end. A test pins that both call ``torch.save``.
ESPNET_WRITERS = (espnet2.train.trainer, espnet2.main_funcs.average_nbest_models)


@contextlib.contextmanager
def atomic_saves_in(modules: Sequence[types.ModuleType] = ESPNET_WRITERS) -> Iterator[None]:
    """Within the block, ``torch.save`` called by ``modules`` is :func:`atomic_save`.

    Only those modules' global name ``torch`` changes; ``torch.save`` itself, as every other
    module in the process calls it, stays torch's own.
    """
    originals = [module.torch for module in modules]
    for module in modules:
        module.torch = _TorchSavingAtomically("torch")
    try:
        yield
    finally:
        for module, original in zip(modules, originals):
            module.torch = original


def read_checkpoint(path: Path) -> Optional[Dict[str, Any]]:
    """``torch.load`` of a file written by ESPnet's Trainer; None (logged) if it is corrupt.

    Only a file that cannot be deserialised counts as corrupt: what torch raises on a file cut
    short (``RuntimeError`` from the zip reader, ``EOFError``, ``UnpicklingError``, and
    ``EINVAL`` from a seek before the file's start when its zip directory is cut off). Any other
    ``OSError`` (permissions, a failing disk, a directory in its place) is raised with the file
    named, and the file is left where it is.

    Raises:
        OSError: ``path`` cannot be read.
    """
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        logger.warning("%s cannot be deserialised (%s)", path, error)
        return None
    except OSError as error:
        if error.errno == errno.EINVAL:
            logger.warning("%s cannot be deserialised (%s: its end is missing)", path, error)
            return None
        raise OSError(
            error.errno,
            f"{path} cannot be read ({error.strerror or error}); it is left as it is: fix the "
            "cause and run again",
        ) from error


def newest_epoch_checkpoint(output_dir: Path) -> Optional[Dict[str, Any]]:
    """A checkpoint in ``checkpoint.pth``'s layout from the newest readable ``<N>epoch.pth``.

    An epoch file holds the model only, so the checkpoint holds the model of epoch N and the
    epoch count N; optimizer and scheduler states, grad scaler and the reporter's history are
    empty (ESPnet's ``Trainer.resume`` then keeps the freshly built ones).

    Args:
        output_dir: The training's ``--output_dir``.

    Returns:
        The checkpoint, or None when no epoch file can be read.
    """
    epochs = [int(m.group(1)) for m in map(EPOCH_FILE.fullmatch, os.listdir(output_dir)) if m]
    for epoch in sorted(epochs, reverse=True):
        model = read_checkpoint(output_dir / f"{epoch}epoch.pth")
        if model is not None:
            reporter = Reporter(epoch)
            return {
                "model": model,
                "reporter": reporter.state_dict(),
                "optimizers": [],
                "schedulers": [],
                "scaler": None,
            }
    return None


def replace_unreadable_checkpoint(path: Path) -> Optional[Dict[str, Any]]:
    """Keep an unreadable ``checkpoint.pth`` as ``.corrupt``; rebuild it from an epoch file.

    ``checkpoint.pth`` is only ever replaced by a whole file, so a kill during this repair leaves
    it to be done again.

    Args:
        path: The unreadable ``<output_dir>/checkpoint.pth``.

    Returns:
        The rebuilt checkpoint (:func:`newest_epoch_checkpoint`), or None when no epoch file can
        be read; ``path`` is then gone and training starts from epoch 1.
    """
    corrupt = path.with_name(CHECKPOINT + ".corrupt")
    states = newest_epoch_checkpoint(path.parent)
    if states is None:
        os.replace(path, corrupt)
        logger.warning(
            "Moved the unreadable %s to %s; no readable <N>epoch.pth either: nothing to resume, "
            "training starts from epoch 1",
            path,
            corrupt,
        )
        return None
    corrupt.unlink(missing_ok=True)
    os.link(path, corrupt)
    epoch = states["reporter"]["epoch"]
    logger.warning(
        "Kept the unreadable %s as %s. Resuming from %depoch.pth, which holds the model only: the "
        "optimizer state, the learning-rate schedule (it restarts at its first step), the grad "
        "scaler and the validation history of epochs 1-%d are lost, so best-model links and "
        "averaging count epochs %d on, and ESPnet removes the files of epochs 1-%d after epoch %d",
        path,
        corrupt,
        epoch,
        epoch,
        epoch + 1,
        epoch,
        epoch + 1,
    )
    atomic_save(states, path)
    return states


def prepare_resume(output_dir: Path, best_model_criterion: Sequence[Sequence[str]]) -> None:
    """Make ``output_dir`` what ESPnet's epoch end leaves, for the epoch ``checkpoint.pth`` holds.

    Re-creates ``<N>epoch.pth`` from the checkpoint's model when it is missing or unreadable, and
    the links ``latest.pth`` and ``<phase>.<key>.best.pth`` ESPnet makes for epoch N, so no link
    points at a missing file. An unreadable ``checkpoint.pth`` goes through
    :func:`replace_unreadable_checkpoint` first.

    Args:
        output_dir: The training's ``--output_dir``.
        best_model_criterion: ``(phase, key, mode)`` triples, e.g. ``("valid", "loss", "min")``.
    """
    path = output_dir / CHECKPOINT
    if not path.exists():
        return
    states = read_checkpoint(path)
    if states is None:
        states = replace_unreadable_checkpoint(path)
        if states is None:
            return
    reporter = Reporter()
    reporter.load_state_dict(states["reporter"])
    epoch = reporter.get_epoch()
    epoch_file = output_dir / f"{epoch}epoch.pth"
    if not epoch_file.exists() or read_checkpoint(epoch_file) is None:
        atomic_save(states["model"], epoch_file)
        logger.warning("Re-created %s from %s", epoch_file, path)
    # ESPnet's links for epoch N (espnet2/train/trainer.py, Trainer.run, step 5)
    links = ["latest.pth"] + [
        f"{phase}.{key}.best.pth"
        for phase, key, mode in best_model_criterion
        if reporter.has(phase, key) and reporter.get_best_epoch(phase, key, mode) == epoch
    ]
    for name in links:
        link = output_dir / name
        link.unlink(missing_ok=True)
        link.symlink_to(epoch_file.name)


def average_each_criterion(output_dir: Path, criteria: Sequence[Sequence[str]], nbest: int) -> None:
    """Write ESPnet's n-best averages with one ``average_nbest_models`` call per criterion.

    Each call loads its epochs afresh, so no criterion sums into another's state dicts. The
    n-best epochs come from the reporter that ``checkpoint.pth`` holds at the end of training.

    Args:
        output_dir: The training's output directory.
        criteria: ``best_model_criterion``, e.g. ``[["valid", "loss", "min"]]``.
        nbest: ``keep_nbest_models``.
    """
    reporter = Reporter()
    reporter.load_state_dict(
        torch.load(output_dir / CHECKPOINT, map_location="cpu", weights_only=False)["reporter"]
    )
    for criterion in criteria:
        average_nbest_models(output_dir, reporter, [criterion], nbest)


class CrashSafeTrainer(Trainer):
    """ESPnet's Trainer with atomic checkpoint writes and :func:`prepare_resume` before resuming."""

    @classmethod
    def run(
        cls,
        model: AbsESPnetModel,
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[Optional[AbsScheduler]],
        train_iter_factory: AbsIterFactory,
        valid_iter_factory: AbsIterFactory,
        plot_attention_iter_factory: Optional[AbsIterFactory],
        trainer_options: TrainerOptions,
        distributed_option: DistributedOption,
    ) -> None:
        """``Trainer.run`` (same arguments); only rank 0 writes, as in ESPnet."""
        if trainer_options.resume and (
            not distributed_option.distributed or distributed_option.dist_rank == 0
        ):
            prepare_resume(Path(trainer_options.output_dir), trainer_options.best_model_criterion)
        if distributed_option.distributed:
            torch.distributed.barrier()  # every rank resumes from the repaired checkpoint
        with atomic_saves_in():
            super().run(
                model=model,
                optimizers=optimizers,
                schedulers=schedulers,
                train_iter_factory=train_iter_factory,
                valid_iter_factory=valid_iter_factory,
                plot_attention_iter_factory=plot_attention_iter_factory,
                trainer_options=trainer_options,
                distributed_option=distributed_option,
            )
            if not distributed_option.distributed or distributed_option.dist_rank == 0:
                average_each_criterion(
                    Path(trainer_options.output_dir),
                    trainer_options.best_model_criterion,
                    trainer_options.keep_nbest_models,
                )
