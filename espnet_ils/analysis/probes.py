"""Frozen probes of the pretrained models, in SUPERB's manner (the paper's table 2) at our scale.

Each probe trains a small downstream model on a learned softmax-weighted sum of a frozen SSL
model's block outputs (:class:`espnet_ils.model.probe_frontend.FrozenSSLFrontend`) through one of
ESPnet's tasks:

* ``pr``, phone recognition (content): a linear layer and CTC over phones (ESPnet's ASR task),
  scored by phone error rate (PER, %) with best-path decoding. The phone transcripts come from the
  50 Hz phone alignments (:func:`phone_sequence`).
* ``sid``, speaker identification (speaker information): mean pooling over time and a linear
  classifier over the speakers of one set (ESPnet's classification task), learned on most of each
  speaker's utterances and scored by accuracy (%) on held-out ones (:func:`split_by_speaker`).

This module prepares the probes' data, scores their outputs and reads their layer weights;
:class:`ProbeLayout` says where the recipe keeps each of them (the recipe takes its paths from
``espnet_ils.bin.probe_layout``). It imports neither torch nor ESPnet until a checkpoint is read.
"""

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Sequence, Tuple

from espnet_ils.analysis.alignments import SILENCE, read_frame_labels
from espnet_ils.analysis.comparison import Run
from espnet_ils.data.kaldi_files import (
    atomic_path,
    read_key_file,
    write_key_file,
    write_text_atomic,
)
from espnet_ils.decoding.scoring import count_errors, read_text

if TYPE_CHECKING:  # matplotlib is imported where a plot is drawn
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

PROBE_TASKS = ("pr", "sid")
SID_SPLITS = ("train", "valid", "test")
SID_MIN_UTTERANCES = len(SID_SPLITS)  # per speaker: one for each split
# The learned layer weights in a probe's checkpoint (ESPnet's Featureizer in our front end).
LAYER_WEIGHTS_KEY = "frontend.featurizer.weights"
PROBE_COLUMNS = ("model", "task", "metric", "value")


@dataclass(frozen=True)
class ProbeLayout:
    """Where stage 7 keeps the probes' data and experiments.

    ``<data>/<task>/``: a data directory per set (``wav.scp``, ``speech_shape``, and ``text``:
    the phones or the speaker, the reference of a test set), ``tokens.txt`` and the ``.done``
    marker of the data. The phone probe's sets are named as the recipe's (its training set, the
    valid set, the test sets); the speaker probe's are :data:`SID_SPLITS` of one set.
    ``<exp>/<task>_<run>/``: one run's probe, its output on a test set in
    ``decode_<set>/text``; ``<exp>/probes.tsv`` and ``layer_weights.{tsv,png}`` for every run.

    Attributes:
        data: The probes' data, ``<dumpdir>/probe`` in the recipe (shared by its iterations).
        exp: The probes' experiments, ``<expdir>/probes_<iteration-2 tag>`` in the recipe.
    """

    data: Path
    exp: Path

    @classmethod
    def of_recipe(cls, dumpdir: Path, expdir: Path, it2_tag: str) -> "ProbeLayout":
        """The recipe's layout under ``--dumpdir`` and ``--expdir`` for the iteration-2 models
        of ``it2_tag`` (e.g. ``it2_L6_km500``)."""
        return cls(Path(dumpdir) / "probe", Path(expdir) / f"probes_{it2_tag}")

    def task_dir(self, task: str) -> Path:
        if task not in PROBE_TASKS:
            raise ValueError(f"probe task {task!r}: one of {PROBE_TASKS}")
        return self.data / task

    def set_dir(self, task: str, dset: str) -> Path:
        """A probe's data directory of one set."""
        return self.task_dir(task) / dset

    def reference(self, task: str, dset: str) -> Path:
        """The phone transcripts (``pr``) or speaker labels (``sid``) of a set."""
        return self.set_dir(task, dset) / "text"

    def token_list(self, task: str) -> Path:
        return self.task_dir(task) / "tokens.txt"

    def data_marker(self, task: str) -> Path:
        return self.task_dir(task) / ".done"

    def probe_exp(self, task: str, run: str) -> Path:
        """The experiment directory of one run's probe."""
        return self.exp / f"{self.task_dir(task).name}_{run}"

    def probe_exps(self, task: str) -> List[Path]:
        """The experiment directories of every run's probe there are, sorted."""
        return sorted(self.exp.glob(self.probe_exp(task, "*").name))

    def decode_dir(self, task: str, run: str, dset: str) -> Path:
        """Where one run's probe decodes a test set (its marker is ``<decode dir>.done``)."""
        return self.probe_exp(task, run) / f"decode_{dset}"

    def hypotheses(self, task: str, run: str, dset: str) -> Path:
        """A probe's output on a test set: the phone recogniser's best paths or the predicted
        speakers (``utt ...`` lines)."""
        return self.decode_dir(task, run, dset) / "text"

    @property
    def results(self) -> Path:
        """PER and accuracy of every run's probes (:func:`write_probe_results`)."""
        return self.exp / "probes.tsv"

    @property
    def weights_table(self) -> Path:
        return self.exp / "layer_weights.tsv"

    @property
    def weights_plot(self) -> Path:
        return self.exp / "layer_weights.png"


def probe_test_sets(task: str, test_sets: Sequence[str]) -> List[str]:
    """The sets a probe is scored on: the recipe's ``--test_sets`` (``pr``) or the held-out
    ``test`` split of the speaker probe's set (``sid``)."""
    if task == "sid":
        return [SID_SPLITS[-1]]
    if task != "pr":
        raise ValueError(f"probe task {task!r}: one of {PROBE_TASKS}")
    return list(test_sets)


def probe_sets(
    task: str, train_set: str, valid_set: str, test_sets: Sequence[str]
) -> Dict[str, List[str]]:
    """The sets a probe learns from, is validated on and is scored on (names for
    :meth:`ProbeLayout.set_dir`).

    Args:
        task: ``pr`` or ``sid``.
        train_set, valid_set, test_sets: The phone probe's sets (the recipe's
            ``--probe_pr_train_set``, ``--valid_set``, ``--test_sets``); the speaker probe splits
            one set into :data:`SID_SPLITS` instead and ignores them.

    Returns:
        ``{"train": [name], "valid": [name], "test": [name, ...]}``.
    """
    if task == "sid":
        train_set, valid_set = SID_SPLITS[:2]
    return {"train": [train_set], "valid": [valid_set], "test": probe_test_sets(task, test_sets)}


def phone_sequence(frames: Sequence[str]) -> List[str]:
    """The phones of a 50 Hz frame alignment in order, without silence.

    Each run of one phone gives it once, so two identical phones in a row (rare within and across
    words) become one: a frame alignment cannot tell them apart.
    """
    phones: List[str] = []
    previous = None
    for phone in frames:
        if phone != previous and phone != SILENCE:
            phones.append(phone)
        previous = phone
    return phones


def phone_transcripts(alignment: Path) -> Dict[str, str]:
    """``{utt: "p1 p2 ..."}`` of a frame-level phone alignment (``utt p p p ...``, 50 Hz).

    Raises:
        ValueError: An utterance aligned to silence only (no phone to recognise), named.
    """
    transcripts = {}
    for utt, frames in read_frame_labels(alignment).items():
        phones = phone_sequence(frames)
        if not phones:
            raise ValueError(f"{alignment}: utterance {utt} is aligned to silence only")
        transcripts[utt] = " ".join(phones)
    return transcripts


def split_by_speaker(
    utt2spk: Mapping[str, str], held_out: float, seed: int
) -> Dict[str, Dict[str, str]]:
    """Split each speaker's utterances into train, valid and test for speaker identification.

    Args:
        utt2spk: ``{utt: speaker}`` of one set.
        held_out: Share of each speaker's utterances for valid, and as many again for test
            (at least one each), drawn at random; the rest train. Usual value 0.1.
        seed: Seed of the draw (the same seed gives the same split).

    Returns:
        ``{"train" | "valid" | "test": {utt: speaker}}``.

    Raises:
        ValueError: ``held_out`` outside (0, 0.5), or a speaker with fewer than
            :data:`SID_MIN_UTTERANCES` utterances (one for each split), named.
    """
    if not 0 < held_out < 0.5:
        raise ValueError(f"held_out={held_out}: a share in (0, 0.5), e.g. 0.1")
    by_speaker: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        by_speaker.setdefault(utt2spk[utt], []).append(utt)
    rng = random.Random(seed)
    splits: Dict[str, Dict[str, str]] = {name: {} for name in SID_SPLITS}
    for speaker in sorted(by_speaker):
        utts = by_speaker[speaker]
        if len(utts) < SID_MIN_UTTERANCES:
            raise ValueError(
                f"speaker {speaker} has {len(utts)} utterance(s): speaker identification needs at "
                f"least {SID_MIN_UTTERANCES} per speaker ({', '.join(SID_SPLITS)}); choose a set "
                "with more per speaker"
            )
        rng.shuffle(utts)
        count = max(1, round(len(utts) * held_out))
        count = min(count, (len(utts) - 1) // 2)  # keep one to learn from
        parts = {"valid": utts[:count], "test": utts[count : 2 * count], "train": utts[2 * count :]}
        for name, part in parts.items():
            splits[name].update({utt: speaker for utt in part})
    return splits


def write_probe_set(src: Path, dst: Path, text: Mapping[str, str]) -> None:
    """A data directory of the utterances of ``text``: ``wav.scp`` and ``speech_shape`` taken from
    the formatted set ``src``, and ``text`` (phones, or the speaker label).

    Raises:
        ValueError: An utterance of ``text`` is not in ``src``, named.
    """
    wav_scp, shapes = read_key_file(src / "wav.scp"), read_key_file(src / "speech_shape")
    missing = sorted(set(text) - set(wav_scp))
    if missing:
        raise ValueError(f"{src}: no audio for {len(missing)} utterance(s), e.g. {missing[:3]}")
    dst.mkdir(parents=True, exist_ok=True)
    write_key_file(dst / "wav.scp", {utt: wav_scp[utt] for utt in text})
    write_key_file(dst / "speech_shape", {utt: shapes[utt] for utt in text})
    write_key_file(dst / "text", dict(text))


def write_class_tokens(labels: Mapping[str, str], path: Path) -> None:
    """The token list of ESPnet's classification task: the classes sorted, then ``<unk>`` (which
    the task leaves out of its classes)."""
    write_text_atomic(path, [*sorted(set(labels.values())), "<unk>"])


def phone_error_rate(reference: Path, hypothesis: Path) -> float:
    """PER (%) of best-path phone hypotheses (``utt p1 p2 ...``) against the phone transcripts;
    an utterance without a hypothesis counts as all deletions."""
    refs, hyps = read_key_file(reference), read_text(Path(hypothesis))
    return count_errors(refs, hyps, unit="word").error_rate


def accuracy(reference: Path, hypothesis: Path) -> float:
    """Speaker-identification accuracy (%): the share of the reference's utterances whose
    predicted label (``utt speaker``) is theirs; an utterance without a prediction is wrong.

    Raises:
        ValueError: A prediction for an utterance outside the reference, named.
    """
    refs, hyps = read_key_file(reference), read_text(Path(hypothesis))
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise ValueError(
            f"{hypothesis}: predictions for utterances not in {reference}: {extra[:3]}"
        )
    return 100.0 * sum(hyps.get(utt) == label for utt, label in refs.items()) / len(refs)


def layer_weights(checkpoint: Path) -> List[float]:
    """The softmax-normalised layer weights a probe learned, block 1 first.

    Raises:
        KeyError: The checkpoint has no weighted sum (not a probe of our front end).
    """
    import torch  # torch takes seconds to import; the layout's users need none of it

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if LAYER_WEIGHTS_KEY not in state:
        raise KeyError(f"{checkpoint}: no {LAYER_WEIGHTS_KEY}; not a probe's checkpoint")
    return torch.softmax(state[LAYER_WEIGHTS_KEY].float(), dim=-1).tolist()


def write_probe_results(rows: Sequence[Mapping[str, object]], path: Path) -> None:
    """TSV with columns model, task, metric, value (one row per model and metric)."""
    lines = ["\t".join(PROBE_COLUMNS)]
    lines += [
        "\t".join(f"{row[c]:.4f}" if c == "value" else str(row[c]) for c in PROBE_COLUMNS)
        for row in rows
    ]
    write_text_atomic(path, lines)


def plot_layer_weights(
    weights: Mapping[str, Mapping[str, Mapping[int, List[float]]]], path: Path
) -> "Figure":
    """One panel per probe task, one line per arm: the mean layer weight over seeds, with the range
    over seeds shaded (PNG, 4.5 x 3.2 inches per panel at 120 dpi).

    Args:
        weights: ``{task: {arm: {seed: [weight of block 1, ..., block N]}}}``.
        path: The PNG to write.

    Returns:
        The figure, closed, for a look at what it draws.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, len(weights), figsize=(4.5 * len(weights), 3.2), squeeze=False)
    for axis, (task, per_arm) in zip(axes[0], weights.items()):
        for arm, per_seed in per_arm.items():
            values = np.array(list(per_seed.values()))  # (seeds, blocks)
            blocks = np.arange(1, values.shape[1] + 1)
            axis.plot(blocks, values.mean(axis=0), marker="o", label=f"{arm} ({len(values)} seeds)")
            axis.fill_between(blocks, values.min(axis=0), values.max(axis=0), alpha=0.2)
        axis.set_xticks(blocks)
        axis.set_xlabel("block")
        axis.set_ylabel("softmax weight")
        axis.set_title(f"{task} probe: learned layer weights")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return figure


def write_phone_tokens(transcripts: Mapping[str, str], path: Path) -> None:
    """The phone recogniser's token list: ``<blank>``, ``<unk>``, the phones of ``transcripts``
    sorted, ``<sos/eos>`` (the layout of ESPnet's ASR token lists)."""
    phones = sorted({phone for text in transcripts.values() for phone in text.split()})
    write_text_atomic(path, ["<blank>", "<unk>", *phones, "<sos/eos>"])


def score_probes(
    runs: Sequence[Run],
    layout: ProbeLayout,
    test_sets: Mapping[str, Sequence[str]],
    checkpoint: str,
) -> Tuple[List[Dict[str, object]], Dict[str, Dict[str, Dict[int, List[float]]]]]:
    """Score every run's probes and read their layer weights.

    Args:
        runs: The runs of the manifest (``espnet_ils.analysis.comparison.read_runs``).
        layout: Where the probes' references, decodings and checkpoints are.
        test_sets: ``{task: [test set, ...]}`` (:func:`probe_test_sets`): the tasks probed.
        checkpoint: The probes' checkpoint whose layer weights are read (``valid.loss.best.pth``).

    Returns:
        The result rows (:func:`write_probe_results`; metrics ``PER <set> (%)`` and
        ``SID accuracy <set> (%)``) and the weights ``{task: {arm: {seed: [w_1, ..., w_N]}}}``.

    Raises:
        FileNotFoundError: A probe's decoding or checkpoint is missing, named.
    """
    rows: List[Dict[str, object]] = []
    weights: Dict[str, Dict[str, Dict[int, List[float]]]] = {}
    for task, dsets in test_sets.items():
        for run in runs:
            for dset in dsets:
                reference, hyp = (
                    layout.reference(task, dset),
                    layout.hypotheses(task, run.name, dset),
                )
                if not hyp.is_file():
                    raise FileNotFoundError(f"{hyp}: the {task} probe of {run.name} is not decoded")
                if task == "pr":
                    metric, value = f"PER {dset} (%)", phone_error_rate(reference, hyp)
                else:
                    metric, value = f"SID accuracy {dset} (%)", accuracy(reference, hyp)
                rows.append(dict(model=run.name, task=task, metric=metric, value=value))
            model_file = layout.probe_exp(task, run.name) / checkpoint
            if not model_file.is_file():
                raise FileNotFoundError(
                    f"{model_file}: the {task} probe of {run.name} has not trained"
                )
            weights.setdefault(task, {}).setdefault(run.arm, {})[run.seed] = layer_weights(
                model_file
            )
    return rows, weights


def write_layer_weights(
    weights: Mapping[str, Mapping[str, Mapping[int, List[float]]]], path: Path
) -> None:
    """TSV with columns task, arm, seed, block (1-based), weight."""
    lines = ["task\tarm\tseed\tblock\tweight"]
    for task, per_arm in weights.items():
        for arm, per_seed in per_arm.items():
            for seed, values in per_seed.items():
                lines += [
                    f"{task}\t{arm}\t{seed}\t{b}\t{w:.4f}" for b, w in enumerate(values, start=1)
                ]
    write_text_atomic(path, lines)
