#!/usr/bin/env python3
"""``espnet_ils.bin.ssl_train`` that also leaves a record per rank, for tests/test_distributed.py.

ESPnet writes checkpoints from rank 0 only, so the ranks' final parameters cannot be compared from
them. This runs ssl_train (same flags; start it as ssl_train is started, e.g. under torchrun) with the
task's Trainer subclassed: after ``Trainer.run`` returns, every rank writes
``<output_dir>/rank<RANK>.pth`` = {"rank", "world_size" (from the process group), "model" (its final
``model.state_dict()``), "written" (names of the files it wrote with ``torch.save`` in training)}.
"""

from pathlib import Path
from typing import List, Optional

import torch
import torch.distributed

from espnet_ils.bin import ssl_train
from espnet_ils.train.tasks import ILSSSLTask


class RecordingTrainer(ILSSSLTask.trainer):
    """The task's Trainer; ``run`` then writes this rank's record (module docstring)."""

    @classmethod
    def run(cls, model, trainer_options, **kwargs) -> None:
        save, written = torch.save, []

        def recording_save(obj, f, *args, **save_kwargs):
            written.append(Path(f).name)
            save(obj, f, *args, **save_kwargs)

        torch.save = recording_save
        try:
            super().run(model=model, trainer_options=trainer_options, **kwargs)
        finally:
            torch.save = save
        rank = torch.distributed.get_rank()  # raises unless training ran distributed
        record = {
            "rank": rank,
            "world_size": torch.distributed.get_world_size(),
            "model": model.state_dict(),
            "written": written,
        }
        torch.save(record, Path(trainer_options.output_dir) / f"rank{rank}.pth")


def main(cmd: Optional[List[str]] = None) -> None:
    ILSSSLTask.trainer = RecordingTrainer
    ssl_train.main(cmd)


if __name__ == "__main__":
    main()
