"""A kill at any moment loses at most the current epoch: atomic writes, repair before resuming.

The training runs are ``ILSSSLTask.main`` in this process on the tiny corpus of test_training
(2 steps per epoch); a kill is simulated by cutting or deleting the files it would have left.
"""

import errno
import inspect
import io
import logging
import os
import shutil
import types
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import yaml
from espnet2.main_funcs.average_nbest_models import average_nbest_models
from espnet2.train.reporter import Reporter
from helpers.corpus import SSL_CONFIG, data_args, write_corpus

from espnet_ils.train.checkpoints import (
    ESPNET_WRITERS,
    atomic_saves_in,
    average_each_criterion,
    prepare_resume,
    read_checkpoint,
)
from espnet_ils.train.tasks import ILSSSLTask

CRITERIA = ILSSSLTask.get_parser().get_default("best_model_criterion")


def train(root: Path, output_dir: Path, max_epoch: int) -> None:
    ILSSSLTask.main(
        cmd=[
            "--config",
            str(root / "ssl.yaml"),
            "--output_dir",
            str(output_dir),
            "--max_epoch",
            str(max_epoch),
            "--resume",
            "true",
            "--ngpu",
            "0",
            "--token_list",
            str(root / "km_tokens.txt"),
            "--token_type",
            "word",
            *map(str, data_args(root, "labels")),
        ]
    )


def links(output_dir: Path) -> Dict[str, str]:
    return {p.name: p.readlink().name for p in output_dir.iterdir() if p.is_symlink()}


def assert_every_link_resolves(output_dir: Path) -> None:
    dangling = [name for name in links(output_dir) if not (output_dir / name).exists()]
    assert not dangling and "valid.loss.best.pth" in links(output_dir), links(output_dir)


def epochs_in(checkpoint: Path) -> List[int]:
    return sorted(torch.load(checkpoint, weights_only=False)["reporter"]["stats"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    config = dict(SSL_CONFIG, num_iters_per_epoch=2, use_matplotlib=False)
    (root / "ssl.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def two_epochs(corpus, tmp_path_factory):
    """A 2-epoch training, and the files ``torch.save`` was asked to write while it ran."""
    output_dir = tmp_path_factory.mktemp("trained") / "exp"
    saved = []
    save = torch.save

    def spy(obj, f, *args, **kwargs):
        saved.append(Path(f).name)
        save(obj, f, *args, **kwargs)

    torch.save = spy
    try:
        train(corpus, output_dir, max_epoch=2)
    finally:
        torch.save = save
    return output_dir, saved


@pytest.fixture
def killed(two_epochs, tmp_path) -> Path:
    """A copy of the 2-epoch output directory, to cut files from."""
    output_dir = tmp_path / "exp"
    shutil.copytree(two_epochs[0], output_dir, symlinks=True)
    return output_dir


class KilledWhilePickling:
    def __reduce__(self):
        raise KeyboardInterrupt  # as a SIGINT inside torch.save


def test_an_interrupted_save_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "checkpoint.pth"
    writer, bystander = types.ModuleType("writer"), types.ModuleType("bystander")
    writer.torch = bystander.torch = torch
    save = torch.save
    with atomic_saves_in([writer]):
        writer.torch.save({"epoch": 1}, path)
        with pytest.raises(KeyboardInterrupt):
            writer.torch.save({"epoch": 2, "optimizer": KilledWhilePickling()}, path)
        buffer = io.BytesIO()
        writer.torch.save({"epoch": 3}, buffer)  # file objects are written as they are
        assert writer.torch.zeros(2).sum() == 0  # the rest of torch as it is
        # torch.save stays torch's own for the rest of the process
        assert torch.save is save and bystander.torch is torch
    assert writer.torch is torch
    assert torch.load(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]
    assert torch.load(io.BytesIO(buffer.getvalue())) == {"epoch": 3}


def test_espnet_writers_call_torch_save_through_their_torch_global():
    """Pins trainer.py and average_nbest_models.py: ``torch.save`` through the module's ``torch``."""
    for module in ESPNET_WRITERS:
        assert module.torch is torch
        assert "torch.save(" in inspect.getsource(module), module.__name__


def test_espnet_writes_every_checkpoint_through_torch_save(two_epochs):
    """Pins espnet2/train/trainer.py, Trainer.run: torch.save to checkpoint.pth, then Nepoch.pth."""
    output_dir, saved = two_epochs
    assert saved[:2] == ["checkpoint.pth.tmp", "1epoch.pth.tmp"]
    assert "2epoch.pth.tmp" in saved and not list(output_dir.glob("*.tmp"))


def test_the_repair_makes_the_links_espnet_makes(killed):
    """Pins Trainer.run's step 5: after a complete epoch the repair changes nothing."""
    before = links(killed)
    assert before["latest.pth"] == "2epoch.pth"
    prepare_resume(killed, CRITERIA)
    assert links(killed) == before


def test_kill_between_checkpoint_and_epoch_file(killed, corpus):
    weights = torch.load(killed / "2epoch.pth")
    (killed / "2epoch.pth").unlink()
    train(corpus, killed, max_epoch=3)
    assert epochs_in(killed / "checkpoint.pth") == [1, 2, 3]
    for name, tensor in torch.load(killed / "2epoch.pth").items():
        torch.testing.assert_close(tensor, weights[name])
    assert links(killed)["latest.pth"] == "3epoch.pth"
    assert_every_link_resolves(killed)


@pytest.mark.filterwarnings("ignore:The stats of the previous epoch")  # none: history lost
def test_truncated_checkpoint_resumes_from_the_newest_epoch_file(killed, corpus, caplog):
    """Before atomic writes: epoch 2's checkpoint.pth cut short, so 2epoch.pth never written."""
    data = (killed / "checkpoint.pth").read_bytes()
    (killed / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    (killed / "2epoch.pth").unlink()
    for name in links(killed):
        (killed / name).unlink()
        (killed / name).symlink_to("1epoch.pth")
    with caplog.at_level(logging.WARNING):
        train(corpus, killed, max_epoch=3)
    assert (killed / "checkpoint.pth.corrupt").read_bytes() == data[: len(data) // 2]
    assert "Resuming from 1epoch.pth, which holds the model only" in caplog.text
    assert epochs_in(killed / "checkpoint.pth") == [2, 3]  # epochs 2-3 trained, not 1-3
    assert {p.name for p in killed.glob("*epoch.pth")} == {"2epoch.pth", "3epoch.pth"}
    assert_every_link_resolves(killed)


def test_nothing_readable_restarts_from_epoch_one(tmp_path, caplog):
    (tmp_path / "checkpoint.pth").write_bytes(b"PK\x03\x04 cut")
    (tmp_path / "1epoch.pth").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        prepare_resume(tmp_path, CRITERIA)
    assert not (tmp_path / "checkpoint.pth").exists()
    assert (tmp_path / "checkpoint.pth.corrupt").exists()
    assert "nothing to resume, training starts from epoch 1" in caplog.text


def test_a_checkpoint_that_cannot_be_read_stops_the_resume_and_stays(tmp_path):
    """Only a file that cannot be deserialised counts as corrupt: a directory in place of the file
    (readable by no one, root included) stops with the file named, and nothing is moved aside."""
    torch.save({"w": torch.ones(2)}, tmp_path / "1epoch.pth")
    (tmp_path / "checkpoint.pth").mkdir()
    with pytest.raises(IsADirectoryError, match=r"checkpoint\.pth cannot be read .*left as it is"):
        prepare_resume(tmp_path, CRITERIA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1epoch.pth", "checkpoint.pth"]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO])
def test_read_errors_other_than_a_cut_file_are_raised(tmp_path, monkeypatch, code):
    path = tmp_path / "checkpoint.pth"
    torch.save({"w": 1}, path)

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(OSError, match=rf"{path} cannot be read \({os.strerror(code)}\)") as raised:
        read_checkpoint(path)
    assert raised.value.errno == code


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -30, -1])
def test_every_cut_of_a_checkpoint_counts_as_corrupt(tmp_path, keep):
    """What torch raises on a file cut anywhere: RuntimeError, EOFError, or EINVAL from a seek."""
    path = tmp_path / "checkpoint.pth"
    torch.save({"w": torch.zeros(1000), "epoch": 2}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    assert read_checkpoint(path) is None


def test_an_interrupted_repair_is_done_again(tmp_path):
    """Killed after keeping the cut file as .corrupt, before checkpoint.pth was replaced."""
    (tmp_path / "checkpoint.pth").write_bytes(b"PK\x03\x04 cut")
    (tmp_path / "checkpoint.pth.corrupt").write_bytes(b"PK\x03\x04 cut")
    torch.save({"w": torch.ones(2)}, tmp_path / "1epoch.pth")
    prepare_resume(tmp_path, CRITERIA)
    states = torch.load(tmp_path / "checkpoint.pth", weights_only=False)
    assert states["reporter"] == {"stats": {}, "epoch": 1} and states["model"]["w"].sum() == 2
    assert links(tmp_path) == {"latest.pth": "1epoch.pth"}


def write_two_epochs(output_dir: Path) -> Reporter:
    """Epoch files with w = 1 and w = 3, and a reporter in which both criteria rank both epochs."""
    output_dir.mkdir()
    for epoch, value in ((1, 1.0), (2, 3.0)):
        torch.save({"w": torch.tensor([value])}, output_dir / f"{epoch}epoch.pth")
    reporter = Reporter()
    stats = {e: {"train": {"loss": 3.0 - e}, "valid": {"loss": 5.0 - e}} for e in (1, 2)}
    reporter.load_state_dict({"stats": stats, "epoch": 2})
    return reporter


TWO_CRITERIA = [["train", "loss", "min"], ["valid", "loss", "min"]]


def averaged(output_dir: Path, name: str) -> float:
    return float(torch.load(output_dir / f"{name}.ave_2best.pth")["w"])


def test_espnet_averages_every_criterion_after_the_first_from_summed_weights(tmp_path):
    """Pins the ESPnet 202511 behaviour that average_each_criterion works around: when this test
    fails, ESPnet averages correctly and the workaround can go."""
    reporter = write_two_epochs(tmp_path / "exp")
    average_nbest_models(tmp_path / "exp", reporter, TWO_CRITERIA, nbest=2)
    assert averaged(tmp_path / "exp", "train.loss") == 2.0
    assert averaged(tmp_path / "exp", "valid.loss") != 2.0


def test_each_criterion_is_averaged_from_the_epoch_files(tmp_path):
    reporter = write_two_epochs(tmp_path / "exp")
    torch.save({"reporter": reporter.state_dict()}, tmp_path / "exp" / "checkpoint.pth")
    average_each_criterion(tmp_path / "exp", TWO_CRITERIA, nbest=2)
    assert (
        averaged(tmp_path / "exp", "train.loss") == averaged(tmp_path / "exp", "valid.loss") == 2.0
    )
    assert (tmp_path / "exp" / "valid.loss.ave.pth").resolve().name == "valid.loss.ave_2best.pth"
