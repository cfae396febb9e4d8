"""The disk plan of a recipe run: what each stage will write, and whether the disks can hold it.

``ils.sh`` runs :func:`plan_run` (through ``espnet_ils.bin.disk_plan``) once, after its option
checks and before stage 1, for the stages of the run (``--stage`` .. ``--stop_stage``). It logs a
table, one row per stage and folder: the audio hours the stage processes, the files and the bytes
it leaves there, the bytes the folder already holds and so the bytes still to write; then the free
space of every filesystem written to. It stops (:class:`DiskSpaceError`, naming the folders, the
bytes they need and the bytes free) when a filesystem's bytes to write exceed its free space.

Every figure is an estimate, right to tens of per cent: the point is the order of magnitude per
stage. Bytes are decimal (1 GB = 1e9 B). The model:

Sets: hours and utterances from ``utt2num_samples`` (``<dumpdir>/raw/<set>``, else
``<datadir>/<set>``; samples at 16 kHz), else from the corpus's known sizes (a YAML file, see
:class:`KnownSizes`; the mini corpus's sets are shares of ``--mini_hours``), scaled by the bytes
found against the known bytes when the set's corpus folders are all in their roots already (a
partial or sample copy is sized as such), else unknown (0 h).

1. Data: each corpus folder (subset) a set needs and its root lacks: its download size, plus the
   largest archive while it unpacks. Libri-Light's utterances cut by VAD under ``--audio_dir``:
   ``cut_bytes_per_hour`` per audio hour (of the copy in the root when there is one), one file
   per ``cut_utterance_s`` seconds. The mini
   corpus: its FLACs (``audio_bytes_per_hour``). The LibriSpeech LM files of the decode modes, when
   missing. Data directories: :data:`LISTING_BYTES` per utterance.
2. ``<dumpdir>/raw``: :data:`LISTING_BYTES` per utterance of every set.
3. MFCC of the train and valid sets: 39 dims x 100 Hz x 4 B = 56.16 MB per audio hour. Their
   labels: 50 Hz x the bytes per label (:data:`LABEL_BYTES`, or measured on an existing label
   ``text``), twice (the shards and the merged ``text``).
4. Iteration-1 pretraining: ESPnet's trainer files (below) of ``--it1_config``.
5. Block features of the k-means portion only: min(``--kmeans_portion`` x train hours,
   ``--kmeans_max_hours``; 0: no cap) x 3600 s x 50 Hz x the ``output_size`` of
   ``--it1_config``'s encoder x 4 B (float32; 2 B with ``--kmeans_feats_storage two_byte``). Labels of
   the train and valid sets as in stage 3. With ``--label_model`` stages 3 and 4 write nothing and
   the width is ``--it2_config``'s (the label model is not loaded to read its own); with
   ``--label_kmeans`` no features are written, only the labels.
6. One trainer's files per iteration-2 run (``--it2_seeds`` x arms), of ``--it2_config``.
7. Per run and probe task, a trainer of a frozen SSL model (the model without its heads; the
   checkpoint holds no optimizer moments worth counting), and the phone probe's CTC log-probs of
   the test sets (50 Hz x phones x 4 B); counted even where missing alignments will skip the
   phone probe. The cluster quality holds its features in memory.
8. The letter LM's text (the LM corpus's text plus :data:`LM_SENTENCE_BYTES` per sentence) and its
   trainer files (modes ``lm_*`` without ``--lm_exp``); per run, a fine-tuning trainer whose model is
   the SSL model without its heads plus a CTC layer (``output_size`` x letters).
9. Per run, CTC log-probs (50 Hz x letters x 4 B) of the test sets (modes greedy, ngram, lm_*) and
   of the valid set (modes ngram, lm_*, which tune on it).
10. Tables only: nothing counted.
11. Per run, a zip of the fine-tuned model and its SSL model (stored as they are).
12. With ``--hf_repo``, per run, the Hub folder: the zip's files unpacked (as many bytes) and the
    model card; with ``--hf_transformers true`` also its transformers export, the fine-tuned
    model's weights in float32 (as stage 8's model: the SSL encoder and the CTC layer; the
    tokenizer's files and the card are a few kB). The upload itself writes nothing here.

With ``--num_splits_ssl`` / ``--num_splits_asr`` above 1 the training set's wav.scp, labels (or
text) and shape file are copied once more into the parts (stages 4, 6, 8).

Trainer files (ESPnet 202511, ``espnet2/train/trainer.py``): ``checkpoint.pth`` (the model and two
Adam moments per trainable parameter: 3 x the model), the epoch snapshots it keeps, min(max_epoch,
max(keep_nbest_models) x criteria + 1 for the latest), and one average per criterion and
``keep_nbest_models`` entry n with 1 < n <= max_epoch: (3 + snapshots + averages) x the model.
max_epoch, keep_nbest_models and best_model_criterion are read by the task's own parser from the
config and the extra arguments (``--pretrain_args`` ...). A model's size is its ``state_dict``,
built on the meta device (no memory, no weights) through its ESPnet task: the stages that train
import ESPnet here (10-30 s on 2 cores), the others do not.

Not counted: files of a few MB or less (markers, logs, k-means models, token lists, tables, plots,
decoded texts, the probes' data), the n-gram IRSTLM builds from transcripts, ark/scp headers and
listings, temporary copies while a file is rewritten. Libri-Light's cut audio is counted at the
corpus's hours, VAD gaps included (an overestimate).

What a folder already holds counts toward its size (the ``there`` column): a run after finished
stages needs only the rest. Libri-Light's cut folders count their finished shards (``.done.<job>``
of ``--nj``) instead of walking millions of files.
"""

import logging
import math
import os
import shutil
import sys
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import (
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
)

import yaml

from espnet_ils.analysis.probes import ProbeLayout
from espnet_ils.data.audio import ENCODER_HOP, MFCC_HOP, SAMPLE_RATE

logger = logging.getLogger(__name__)

FRAME_RATE = SAMPLE_RATE / ENCODER_HOP  # 50 Hz: encoder frames, labels, CTC log-probs
MFCC_RATE = SAMPLE_RATE / MFCC_HOP  # 100 Hz
MFCC_DIMS = 39  # espnet_ils.targets.mfcc: 13 cepstra with deltas and delta-deltas
FLOAT32 = 4  # bytes
FEATURE_STORAGE_BYTES = {"float32": 4, "two_byte": 2}  # --kmeans_feats_storage
LABEL_BYTES = 4.0  # bytes per label in a label text ("123 "), when there is none to measure
LABEL_SAMPLE_LINES = 200  # lines of an existing label text read to measure its bytes per label
LISTING_BYTES = 400  # per utterance of a data directory (LibriSpeech: wav.scp ~100, text ~200, ...)
SPLIT_LISTING_BYTES = 150  # per utterance of a split part: its wav.scp and shape lines
DATA_DIR_FILES = 9  # wav.scp, text, utt2spk, spk2utt, utt2dur, utt2num_samples, speech_shape, ...
TRAINER_FILES = 5  # besides the snapshots: checkpoint.pth, config.yaml, train.log, marker, images/
LM_SENTENCE_BYTES = 70  # per LM sentence: its key in text and in text_shape.char, and the shape
LETTERS = 31  # the fine-tuning token list until stage 8 writes it (config_check.LETTER_TOKENS)
PHONES = 72  # the phone probe's token list until stage 7 writes it (ARPAbet with stress, silences)
TUNED_MODES = ("ngram", "lm_fusion", "lm_rescore")  # tuned on the valid set's log-probs
LOGPROB_MODES = ("greedy", *TUNED_MODES)  # read the CTC log-probs stage 9 dumps


KNOWN_SOURCE = "known size"  # SetSize.source of a set sized by the known sizes


class DiskSpaceError(ValueError):
    """The bytes a run will write exceed a filesystem's free space; the message names the folders."""


# ---------------------------------------------------------------------------------------------
# Known sizes of the corpora


@dataclass(frozen=True)
class KnownSet:
    """A set stage 1 makes: ``hours`` of audio, ``utterances``, the corpus folders it is made of."""

    hours: float
    utterances: int
    subsets: Tuple[str, ...]


@dataclass(frozen=True)
class Subset:
    """A corpus folder stage 1 downloads into ``root`` (db.sh's variable) when missing.

    ``bytes``: its download (about its size unpacked too); ``files``: the files it unpacks to;
    ``cut``: stage 1 also cuts it into utterances under ``--audio_dir`` (Libri-Light).
    """

    root: str
    hours: float
    files: int
    bytes: float
    cut: bool = False


@dataclass(frozen=True)
class LMResource:
    """A LibriSpeech LM file stage 1 fetches when missing: its ``bytes``; for a text corpus, its
    uncompressed ``text_bytes`` and ``sentences`` (0 when not a corpus)."""

    bytes: float
    text_bytes: float = 0.0
    sentences: float = 0.0


@dataclass(frozen=True)
class KnownSizes:
    """Sizes of the corpora's sets before stage 1 has made them (the recipe's
    ``local/corpus_sizes.yaml``)::

        librispeech:
          sets: {<set>: {hours: H, utterances: N, subsets: [<subset>, ...]}}
          subsets: {<subset>: {root: <db.sh variable>, hours: H, files: N, bytes: B[, cut: true]}}
          cut_bytes_per_hour: B            # Libri-Light's cut FLACs, per audio hour
          cut_utterance_s: S               # their mean utterance, seconds
          lm_resources: {<file>: {bytes: B[, text_bytes: B, sentences: N]}}
        mini:
          sets: {<set>: share of --mini_hours}
          audio_bytes_per_hour: B          # its FLACs
          utterance_s: S                   # mean utterance, seconds
    """

    sets: Mapping[str, KnownSet]
    subsets: Mapping[str, Subset]
    cut_bytes_per_hour: float
    cut_utterance_s: float
    lm_resources: Mapping[str, LMResource]
    mini_shares: Mapping[str, float]
    mini_bytes_per_hour: float
    mini_utterance_s: float

    @classmethod
    def from_yaml(cls, path: Path) -> "KnownSizes":
        """Read and check ``path``; a ValueError names the file and the key that is wrong."""
        data = yaml.safe_load(Path(path).read_text())

        def get(mapping, key: str, where: str, kind=float):
            value = mapping.get(key) if isinstance(mapping, dict) else None
            if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if kind is not float and isinstance(value, kind):
                return value
            raise ValueError(
                f"{path}: {where}{key} is {value!r}; expected a {kind.__name__} (numbers with a "
                "dot and a signed exponent, e.g. 6.76e+9, for YAML to read them as numbers)"
            )

        ls = get(data, "librispeech", "", dict)
        mini = get(data, "mini", "", dict)
        sets = {
            name: KnownSet(
                get(entry, "hours", f"librispeech.sets.{name}."),
                int(get(entry, "utterances", f"librispeech.sets.{name}.")),
                tuple(get(entry, "subsets", f"librispeech.sets.{name}.", list)),
            )
            for name, entry in get(ls, "sets", "librispeech.", dict).items()
        }
        subsets = {
            name: Subset(
                get(entry, "root", f"librispeech.subsets.{name}.", str),
                get(entry, "hours", f"librispeech.subsets.{name}."),
                int(get(entry, "files", f"librispeech.subsets.{name}.")),
                get(entry, "bytes", f"librispeech.subsets.{name}."),
                bool(entry.get("cut", False)),
            )
            for name, entry in get(ls, "subsets", "librispeech.", dict).items()
        }
        for name, known in sets.items():
            for subset in known.subsets:
                if subset not in subsets:
                    raise ValueError(f"{path}: set {name} names subset {subset}, not listed")
        resources = {
            name: LMResource(
                get(entry, "bytes", f"librispeech.lm_resources.{name}."),
                float(entry.get("text_bytes", 0.0)),
                float(entry.get("sentences", 0.0)),
            )
            for name, entry in get(ls, "lm_resources", "librispeech.", dict).items()
        }
        shares = {
            name: get(get(mini, "sets", "mini.", dict), name, "mini.sets.")
            for name in get(mini, "sets", "mini.", dict)
        }
        return cls(
            sets=sets,
            subsets=subsets,
            cut_bytes_per_hour=get(ls, "cut_bytes_per_hour", "librispeech."),
            cut_utterance_s=get(ls, "cut_utterance_s", "librispeech."),
            lm_resources=resources,
            mini_shares=shares,
            mini_bytes_per_hour=get(mini, "audio_bytes_per_hour", "mini."),
            mini_utterance_s=get(mini, "utterance_s", "mini."),
        )


# ---------------------------------------------------------------------------------------------
# The options of a run


@dataclass(frozen=True)
class RunOptions:
    """What ``ils.sh`` passes: its options and the folders it writes (see its ``--help``).

    Lists of sets, modes and args are split already; ``ssl_exps`` and ``asr_exps`` are the
    iteration-2 and fine-tuning experiment folders of the runs, in the same order.
    """

    stage: int
    stop_stage: int
    corpus: str  # librispeech or mini
    mini_hours: float
    known: KnownSizes
    corpus_roots: Mapping[str, Path]  # db.sh's variable -> folder
    audio_dir: Path  # Libri-Light's cut utterances
    datadir: Path
    dumpdir: Path
    expdir: Path
    sets: Sequence[str]  # every set of the run
    train_set: str
    valid_set: str
    finetune_set: str
    test_sets: Sequence[str]
    nj: int
    inference_nj: int
    it1_config: Path
    it1_tag: str
    it1_exp: Path
    it2_config: Path
    it2_tag: str
    ssl_exps: Sequence[Path]
    kmeans_portion: float
    kmeans_max_hours: float
    kmeans_feats_storage: str
    asr_config: Path
    asr_exps: Sequence[Path]
    token_list: Path
    decode_modes: Sequence[str] = ()
    probe_tasks: Sequence[str] = ()
    probe_configs: Mapping[str, Path] = field(default_factory=dict)  # task -> config
    lm_config: Optional[Path] = None
    lm_exp: Optional[Path] = None
    lm_dir: Optional[Path] = None
    lm_text: Optional[Path] = None
    lm_train_corpus: Sequence[Path] = ()
    ngram_arpa: Optional[Path] = None
    num_splits_ssl: int = 1
    num_splits_asr: int = 1
    pretrain_args: Sequence[str] = ()
    asr_args: Sequence[str] = ()
    lm_args: Sequence[str] = ()
    probe_args: Sequence[str] = ()
    label_model: Optional[Path] = None  # targets from another model: no iteration 1 (stages 3-4)
    label_kmeans: Optional[Path] = None  # a given k-means model: stage 5 writes no features
    hub_folders: bool = False  # stage 12 writes each run's Hub folder (ils.sh with --hf_repo)
    hub_transformers: bool = False  # and its transformers export (with --hf_transformers true)

    def roots(self) -> Dict[str, Path]:
        """The folders a run writes under, by the option (or db.sh variable) that names them."""
        roots = {f"{name} (db.sh)": path for name, path in self.corpus_roots.items()}
        roots.update({"--datadir": self.datadir, "--dumpdir": self.dumpdir})
        roots.update({"--expdir": self.expdir})
        return roots

    @property
    def trains_lm(self) -> bool:
        return any(m.startswith("lm_") for m in self.decode_modes) and not self.lm_exp


# ---------------------------------------------------------------------------------------------
# Sizes of sets, folders and models


class SetSize(NamedTuple):
    """``hours`` of audio and ``utterances`` of a set, and where the figures come from."""

    hours: float
    utterances: int
    source: str


def read_lengths(path: Path) -> Tuple[int, int]:
    """(utterances, samples at 16 kHz) of an ``utt2num_samples`` file, streamed: Libri-Light's
    14 M lines would not fit :func:`espnet_ils.data.datadir.num_samples_of`'s dict comfortably, and
    the plan must never read audio headers, as it does without the file."""
    utterances = samples = 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                raise ValueError(
                    f"{path}: line {utterances + 1} is not '<utt> <samples>': {line!r}"
                )
            utterances += 1
            samples += int(fields[1])
    return utterances, samples


def set_size(name: str, opts: RunOptions) -> SetSize:
    """The size of set ``name``: from its data directories, else the known sizes (see above)."""
    for folder in (opts.dumpdir / "raw" / name, opts.datadir / name):
        lengths = folder / "utt2num_samples"
        if lengths.is_file():
            utterances, samples = read_lengths(lengths)
            return SetSize(samples / SAMPLE_RATE / 3600, utterances, str(lengths))
    if opts.corpus == "mini" and name in opts.known.mini_shares:
        hours = opts.known.mini_shares[name] * opts.mini_hours
        utterances = round(hours * 3600 / opts.known.mini_utterance_s)
        return SetSize(hours, utterances, f"{opts.known.mini_shares[name]:g} x --mini_hours")
    if opts.corpus == "librispeech" and name in opts.known.sets:
        known = opts.known.sets[name]
        return SetSize(known.hours, known.utterances, KNOWN_SOURCE)
    return SetSize(0.0, 0, "unknown: no utt2num_samples, not a known set; counted as 0 h")


def folder_bytes(path: Path, recursive: bool = True) -> int:
    """Bytes of the regular files in ``path`` (and its subfolders when ``recursive``; symbolic
    links not followed; 0 when absent)."""
    if path.is_symlink() or not path.is_dir():
        return 0
    total = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                total += folder_bytes(Path(entry.path)) if recursive else 0
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def bytes_per_label(texts: Iterable[Path]) -> float:
    """Bytes per label of the first existing label ``text`` (its first lines; the key and its
    space left out), else :data:`LABEL_BYTES`."""
    for text in texts:
        if not text.is_file():
            continue
        size = labels = 0
        with open(text, encoding="utf-8") as lines:
            for _, line in zip(range(LABEL_SAMPLE_LINES), lines):
                parts = line.split(maxsplit=1)
                if len(parts) == 2:
                    size += len(parts[1].rstrip("\n")) + 1  # the labels, their spaces, newline
                    labels += len(parts[1].split())
        if labels:
            return size / labels
    return LABEL_BYTES


class Trainer(NamedTuple):
    """A model as one ESPnet training saves it.

    ``model_bytes``: its ``state_dict``; ``trainable_bytes``: the parameters Adam keeps two moments
    of; ``snapshots``: the model files kept beside ``checkpoint.pth`` (epochs and averages).
    """

    model_bytes: int
    trainable_bytes: int
    snapshots: int

    @property
    def bytes(self) -> int:
        """``checkpoint.pth`` (model + two moments) and the snapshots, in bytes."""
        return (1 + self.snapshots) * self.model_bytes + 2 * self.trainable_bytes

    @property
    def files(self) -> int:
        return self.snapshots + TRAINER_FILES


def kept_snapshots(max_epoch: int, keep_nbest_models, criteria: int) -> int:
    """Model files ESPnet's trainer leaves: epoch snapshots (the n best per criterion and the
    latest, at most ``max_epoch``) and the averages of ``average_nbest_models`` (one per criterion
    and entry n of ``keep_nbest_models`` with 1 < n <= max_epoch)."""
    keep = [keep_nbest_models] if isinstance(keep_nbest_models, int) else list(keep_nbest_models)
    epochs = min(max_epoch, max(keep) * criteria + 1)
    averages = criteria * sum(1 for n in keep if 1 < n <= max_epoch)
    return epochs + averages


@contextmanager
def _quiet() -> Iterator[None]:
    """ESPnet's builders log each model's details at INFO through the root logger: not here."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _tasks() -> SimpleNamespace:
    """ESPnet's tasks, imported on first use (10-30 s). ESPnet prints a notice on stdout as it
    imports (no flash_attn): sent to stderr, stdout carries no data."""
    with redirect_stdout(sys.stderr):
        from espnet2.tasks.lm import LMTask

        from espnet_ils.train.tasks import ILSASRTask, ILSCLSTask, ILSSSLTask
    return SimpleNamespace(ssl=ILSSSLTask, asr=ILSASRTask, cls=ILSCLSTask, lm=LMTask)


def _state_bytes(tensors: Iterable) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _parse(task, config: Path, extra_args: Sequence[str], option: str):
    """``task``'s arguments from ``config`` and ``extra_args`` (what the training will see);
    ESPnet's parse error raised as a ValueError naming ``option``, not exited on."""

    def error(message: str) -> None:
        raise ValueError(f"{option} '{' '.join(extra_args)}' with {config}: {message}")

    parser = task.get_parser()
    parser.error = error
    return parser.parse_args(["--config", str(config), *extra_args])


class ModelSizes:
    """The recipe's models, built on the meta device through their ESPnet tasks (cached).

    ESPnet is imported on the first call (10-30 s on 2 cores), so that a plan without training
    stages stays quick (importing this module ran ``espnet_ils``'s registration, which keeps
    ESPnet's imports offline). Sizes in bytes.
    """

    def __init__(self) -> None:
        self._ssl: Dict[Tuple, Tuple[Trainer, int, int]] = {}

    @staticmethod
    def _trainer_counts(args) -> int:
        return kept_snapshots(
            args.max_epoch, args.keep_nbest_models, len(args.best_model_criterion)
        )

    def ssl(self, config: Path, extra_args: Sequence[str] = ()) -> Tuple[Trainer, int, int]:
        """(trainer, bytes without the prediction heads, encoder ``output_size``) of an SSL config
        trained with ``extra_args`` (``--pretrain_args``)."""
        key = (str(config), tuple(extra_args))
        if key not in self._ssl:
            import torch

            from espnet_ils.data.labels import cluster_token_list

            task = _tasks().ssl
            args = _parse(task, config, extra_args, "--pretrain_args")
            args.token_list = cluster_token_list(args.loss[0]["conf"]["num_classes"])
            with torch.device("meta"), _quiet():
                model = task.build_model(args)
            state = model.state_dict()
            total = _state_bytes(state.values())
            heads = _state_bytes(v for k, v in state.items() if k.startswith("losses."))
            trainable = _state_bytes(p for p in model.parameters() if p.requires_grad)
            trainer = Trainer(total, trainable, self._trainer_counts(args))
            self._ssl[key] = (trainer, total - heads, model.encoder.output_size())
        return self._ssl[key]

    def finetuned(
        self, asr_config: Path, asr_args: Sequence[str], ssl_config: Path, vocabulary: int
    ) -> Trainer:
        """The fine-tuned model: the SSL model without its heads and a CTC layer (weights and
        bias per token); the frozen conv front is counted as trainable (~4% of BASE)."""
        _, without_heads, ssl_width = self.ssl(ssl_config)
        args = _parse(_tasks().asr, asr_config, asr_args, "--asr_args")
        width = (args.encoder_conf or {}).get("output_size", ssl_width)
        model = without_heads + (width + 1) * vocabulary * FLOAT32
        return Trainer(model, model, self._trainer_counts(args))

    def probe(self, task: str, config: Path, args: Sequence[str], ssl_config: Path) -> Trainer:
        """A probe: the frozen SSL model without its heads (its own layers are a few kB)."""
        _, without_heads, _ = self.ssl(ssl_config)
        tasks = _tasks()
        parsed = _parse(tasks.asr if task == "pr" else tasks.cls, config, args, "--probe_args")
        return Trainer(without_heads, 0, self._trainer_counts(parsed))

    def lm(self, config: Path, lm_args: Sequence[str], vocabulary: int) -> Trainer:
        """The letter LM of ``config`` over ``vocabulary`` tokens."""
        import torch

        task = _tasks().lm
        args = _parse(task, config, lm_args, "--lm_args")
        args.token_list = [f"<t{i}>" for i in range(vocabulary)]
        with torch.device("meta"), _quiet():
            model = task.build_model(args)
        total = _state_bytes(model.state_dict().values())
        trainable = _state_bytes(p for p in model.parameters() if p.requires_grad)
        return Trainer(total, trainable, self._trainer_counts(args))


def encoder_output_size(config: Path) -> int:
    """``encoder_conf.output_size`` of an SSL config (YAML only: no ESPnet import)."""
    conf = yaml.safe_load(Path(config).read_text()) or {}
    width = (conf.get("encoder_conf") or {}).get("output_size")
    if not isinstance(width, int):
        raise ValueError(f"{config}: no encoder_conf.output_size; stage 5's features need it")
    return width


def token_count(token_list: Path, default: int) -> int:
    """Lines of ``token_list`` when it exists, else ``default``."""
    if token_list.is_file():
        with open(token_list, encoding="utf-8") as lines:
            return sum(1 for line in lines if line.strip())
    return default


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class Row:
    """What one stage writes in one folder: ``hours`` of audio processed, ``files``, ``bytes``
    planned (the folder's size when the stage is done) and ``there`` (bytes already in it)."""

    stage: int
    root: str  # the option (or db.sh variable) that names the folder's root
    folder: Path
    what: str
    hours: Optional[float]  # None: the stage reads no audio for it
    files: int
    bytes: int
    there: int = 0

    @property
    def to_write(self) -> int:
        return max(0, self.bytes - self.there)


def _row(
    stage: int,
    root: str,
    folder: Path,
    what: str,
    hours: Optional[float],
    files: float,
    size: float,
    there: Optional[float] = None,
) -> Row:
    """A :class:`Row`; ``there`` defaults to everything under ``folder``."""
    there = folder_bytes(folder) if there is None else there
    return Row(stage, root, folder, what, hours, int(files), int(math.ceil(size)), int(there))


class _Planner:
    """Builds each stage's rows for one run (see the module docstring for the model)."""

    def __init__(self, opts: RunOptions, models: ModelSizes) -> None:
        self.o = opts
        self.models = models
        self.sizes: Dict[str, SetSize] = {}  # of the sets used so far
        self._found: Dict[str, Optional[int]] = {}

    def size(self, name: str) -> SetSize:
        if name not in self.sizes:
            size = set_size(name, self.o)
            if size.source == KNOWN_SOURCE:
                size = self._scaled_to_corpus(name, size)
            self.sizes[name] = size
        return self.sizes[name]

    def found_bytes(self, subset: str) -> Optional[int]:
        """Bytes of a corpus folder in its root (walked once), None when it is not there."""
        if subset not in self._found:
            root = self.o.corpus_roots.get(self.o.known.subsets[subset].root)
            there = root is not None and (root / subset).is_dir()
            self._found[subset] = folder_bytes(root / subset) if there else None
        return self._found[subset]

    def _scaled_to_corpus(self, name: str, size: SetSize) -> SetSize:
        """A known set whose corpus folders are all in their roots (a partial or sample copy,
        say): its known size scaled by the bytes found there against the known bytes."""
        subsets = self.o.known.sets[name].subsets
        found = [self.found_bytes(s) for s in subsets]
        if any(f is None for f in found):
            return size  # downloaded in stage 1: the known size
        ratio = sum(found) / sum(self.o.known.subsets[s].bytes for s in subsets)
        source = f"known size x {ratio:.3g}, the bytes of {', '.join(subsets)} found"
        return SetSize(size.hours * ratio, round(size.utterances * ratio), source)

    @property
    def ssl_sets(self) -> List[str]:
        return list(dict.fromkeys([self.o.train_set, self.o.valid_set]))

    def label_row(self, stage: int, tag: str) -> Row:
        folder = self.o.dumpdir / "labels" / tag
        per_label = bytes_per_label(folder / s / "text" for s in self.ssl_sets)
        hours = sum(self.size(s).hours for s in self.ssl_sets)
        size = 2 * hours * 3600 * FRAME_RATE * per_label
        there = sum(folder_bytes(folder / s, recursive=False) for s in self.ssl_sets)
        files = len(self.ssl_sets) * (3 * self.o.nj + 1)
        what = f"labels of {', '.join(self.ssl_sets)} ({per_label:.1f} B per label, twice)"
        return _row(stage, "--dumpdir", folder, what, hours, files, size, there)

    def split_row(
        self, stage: int, folder: Path, num_splits: int, name: str, text_bytes_per_hour: float
    ) -> Row:
        size = self.size(name)
        total = size.utterances * SPLIT_LISTING_BYTES + size.hours * text_bytes_per_hour
        what = f"{name} cut into {num_splits} parts (wav.scp, text, shapes)"
        return _row(stage, "--dumpdir", folder, what, size.hours, 3 * num_splits, total)

    def trainer_row(
        self,
        stage: int,
        folder: Path,
        what: str,
        trainer: Callable[[], Trainer],
        hours: Optional[float],
    ) -> Row:
        """A training's row. A finished one (its ``.done``: ils.sh never trains it again) is what
        its folder holds, and ``trainer`` (which builds the model) is not called."""
        there = folder_bytes(folder, recursive=False)  # stages 9 and 11 write its subfolders
        if (folder / ".done").is_file():
            files = sum(1 for p in folder.iterdir() if p.is_file())
            return _row(stage, "--expdir", folder, f"{what} (done)", hours, files, there, there)
        built = trainer()
        return _row(stage, "--expdir", folder, what, hours, built.files, built.bytes, there)

    # stage 1 ----------------------------------------------------------------------------------
    def stage1(self) -> List[Row]:
        o = self.o
        if o.corpus == "mini":
            utterances = sum(self.size(s).utterances for s in o.known.mini_shares)
            size = o.mini_hours * o.known.mini_bytes_per_hour + utterances * LISTING_BYTES
            files = utterances + DATA_DIR_FILES * len(o.known.mini_shares)
            what = "mini corpus: FLACs and data directories " + ", ".join(o.known.mini_shares)
            return [_row(1, "--datadir", o.datadir, what, o.mini_hours, files, size)]
        rows = []
        needed = list(dict.fromkeys(s for name in o.sets for s in self._known_subsets(name)))
        for variable, root in o.corpus_roots.items():
            missing = [
                s for s in needed if o.known.subsets[s].root == variable and not (root / s).is_dir()
            ]
            if missing:
                subsets = [o.known.subsets[s] for s in missing]
                size = sum(s.bytes for s in subsets) + max(s.bytes for s in subsets)
                what = f"download {', '.join(missing)} (+ the largest archive while it unpacks)"
                hours = sum(s.hours for s in subsets)
                files = sum(s.files for s in subsets)
                rows.append(_row(1, f"{variable} (db.sh)", root, what, hours, files, size, 0))
        cut = [s for s in needed if o.known.subsets[s].cut]
        if cut:
            hours = there = 0.0
            for name in cut:
                known = o.known.subsets[name]
                found = self.found_bytes(name)  # a copy in the root: its share of the hours
                share = 1.0 if found is None else found / known.bytes
                done = len(list((o.audio_dir / name).glob(".done.*")))
                hours += share * known.hours
                there += min(1.0, done / o.nj) * share * known.hours * o.known.cut_bytes_per_hour
            what = f"Libri-Light's {', '.join(cut)} cut into utterances (FLAC)"
            utterances = hours * 3600 / o.known.cut_utterance_s
            size = hours * o.known.cut_bytes_per_hour
            rows.append(_row(1, "--dumpdir", o.audio_dir, what, hours, utterances, size, there))
        resources = self._missing_lm_resources()
        if resources:
            variable = "LIBRISPEECH_LM"
            size = sum(o.known.lm_resources[f.name].bytes for f in resources)
            what = "fetch " + ", ".join(f.name for f in resources)
            folder = resources[0].parent
            rows.append(_row(1, f"{variable} (db.sh)", folder, what, None, len(resources), size, 0))
        sizes = [self.size(s) for s in o.sets]
        what = "data directories " + ", ".join(o.sets)
        rows.append(
            _row(
                1,
                "--datadir",
                o.datadir,
                what,
                sum(s.hours for s in sizes),
                DATA_DIR_FILES * len(sizes),
                sum(s.utterances for s in sizes) * LISTING_BYTES,
                sum(folder_bytes(o.datadir / s) for s in o.sets),
            )
        )
        return rows

    def _known_subsets(self, name: str) -> Tuple[str, ...]:
        # As data.sh: a subset missing from its root is fetched whatever data/ holds; a set that
        # is not known is data.sh's to refuse.
        known = self.o.known.sets.get(name)
        return known.subsets if known is not None else ()

    def _missing_lm_resources(self) -> List[Path]:
        o = self.o
        lm_root = o.corpus_roots.get("LIBRISPEECH_LM")
        wanted = []
        if "ngram" in o.decode_modes and o.ngram_arpa:
            wanted.append(o.ngram_arpa)
        if o.trains_lm:
            wanted.extend(o.lm_train_corpus)
        return [
            f
            for f in dict.fromkeys(wanted)
            if lm_root is not None
            and not f.is_file()
            and f.parent.resolve() == lm_root.resolve()
            and f.name in o.known.lm_resources
        ]

    # stage 2 ----------------------------------------------------------------------------------
    def stage2(self) -> List[Row]:
        sizes = [self.size(s) for s in self.o.sets]
        folder = self.o.dumpdir / "raw"
        return [
            _row(
                2,
                "--dumpdir",
                folder,
                "formatted data directories " + ", ".join(self.o.sets),
                sum(s.hours for s in sizes),
                DATA_DIR_FILES * len(sizes),
                sum(s.utterances for s in sizes) * LISTING_BYTES,
                sum(folder_bytes(folder / s, recursive=False) for s in self.o.sets),
            )
        ]

    # stage 3 ----------------------------------------------------------------------------------
    def stage3(self) -> List[Row]:
        hours = sum(self.size(s).hours for s in self.ssl_sets)
        folder = self.o.dumpdir / "mfcc"
        size = hours * 3600 * MFCC_RATE * MFCC_DIMS * FLOAT32
        there = sum(folder_bytes(folder / s, recursive=False) for s in self.ssl_sets)
        files = len(self.ssl_sets) * 5 * self.o.nj
        what = f"MFCC of {', '.join(self.ssl_sets)} ({MFCC_DIMS} dims, 100 Hz, float32)"
        mfcc = _row(3, "--dumpdir", folder, what, hours, files, size, there)
        return [mfcc, self.label_row(3, self.o.it1_tag)]

    # stage 4 ----------------------------------------------------------------------------------
    def stage4(self) -> List[Row]:
        o = self.o

        def trainer() -> Trainer:
            return self.models.ssl(o.it1_config, o.pretrain_args)[0]

        hours = self.size(o.train_set).hours
        rows = [self.trainer_row(4, o.it1_exp, "iteration-1 pretraining", trainer, hours)]
        return rows + self.ssl_split_rows(4, o.it1_tag)

    def ssl_split_rows(self, stage: int, tag: str) -> List[Row]:
        o = self.o
        if o.num_splits_ssl <= 1:
            return []
        folder = o.dumpdir / "labels" / tag / o.train_set / f"split{o.num_splits_ssl}"
        texts = [o.dumpdir / "labels" / tag / o.train_set / "text"]
        per_hour = 3600 * FRAME_RATE * bytes_per_label(texts)
        return [self.split_row(stage, folder, o.num_splits_ssl, o.train_set, per_hour)]

    # stage 5 ----------------------------------------------------------------------------------
    def stage5(self) -> List[Row]:
        o = self.o
        if o.label_kmeans:
            return [self.label_row(5, o.it2_tag)]
        train_hours = self.size(o.train_set).hours
        hours = o.kmeans_portion * train_hours
        if o.kmeans_max_hours > 0:
            hours = min(hours, o.kmeans_max_hours)
        # another label model's width is not read (that would load it): --it2_config's stands in
        width = encoder_output_size(o.it2_config if o.label_model else o.it1_config)
        item = FEATURE_STORAGE_BYTES[o.kmeans_feats_storage]
        size = hours * 3600 * FRAME_RATE * width * item
        folder = o.dumpdir / f"feats_{o.it2_tag}" / o.train_set
        what = (
            f"block features of the k-means portion ({width} dims, 50 Hz, {o.kmeans_feats_storage})"
        )
        there = folder_bytes(folder, recursive=False)
        feats = _row(5, "--dumpdir", folder, what, hours, 5 * o.nj + 2, size, there)
        return [feats, self.label_row(5, o.it2_tag)]

    # stage 6 ----------------------------------------------------------------------------------
    def stage6(self) -> List[Row]:
        o = self.o

        def trainer() -> Trainer:
            return self.models.ssl(o.it2_config, o.pretrain_args)[0]

        hours = self.size(o.train_set).hours
        rows = [
            self.trainer_row(6, exp, "iteration-2 pretraining", trainer, hours)
            for exp in o.ssl_exps
        ]
        return rows + self.ssl_split_rows(6, o.it2_tag)

    # stage 7 ----------------------------------------------------------------------------------
    def stage7(self) -> List[Row]:
        o = self.o
        if not o.probe_tasks:
            return []
        layout = ProbeLayout.of_recipe(o.dumpdir, o.expdir, o.it2_tag)
        test_hours = sum(self.size(s).hours for s in o.test_sets)
        phones = token_count(layout.token_list("pr"), PHONES)
        rows = []
        for task in o.probe_tasks:
            exps = layout.probe_exps(task)
            what = f"{task} probes of {len(o.ssl_exps)} run(s)"
            if sum((e / ".done").is_file() for e in exps) >= len(o.ssl_exps):  # all trained
                size, files = sum(folder_bytes(e, recursive=False) for e in exps), 0
                what += " (trained)"
            else:
                trainer = self.models.probe(task, o.probe_configs[task], o.probe_args, o.it2_config)
                size, files = len(o.ssl_exps) * trainer.bytes, len(o.ssl_exps) * trainer.files
            if task == "pr":
                size += len(o.ssl_exps) * test_hours * 3600 * FRAME_RATE * phones * FLOAT32
                what += f" and their CTC log-probs of {', '.join(o.test_sets)}"
            there = sum(folder_bytes(e) for e in exps)
            rows.append(_row(7, "--expdir", layout.exp, what, None, files, size, there))
        return rows

    # stage 8 ----------------------------------------------------------------------------------
    def stage8(self) -> List[Row]:
        o = self.o
        rows = []
        vocabulary = token_count(o.token_list, LETTERS)
        if o.trains_lm and o.lm_config is not None and o.lm_dir is not None:
            text_bytes = sentences = 0.0
            for corpus in o.lm_train_corpus:
                known = o.known.lm_resources.get(corpus.name)
                if known is not None and known.sentences:
                    text_bytes, sentences = (
                        text_bytes + known.text_bytes,
                        sentences + known.sentences,
                    )
                elif corpus.is_file():  # a gzip'd text is about a third of its text
                    plain = corpus.stat().st_size * (3 if corpus.suffix == ".gz" else 1)
                    text_bytes, sentences = text_bytes + plain, sentences + plain / 100
            if o.lm_text is not None and text_bytes:
                size = text_bytes + sentences * LM_SENTENCE_BYTES
                what = "letter LM text of " + ", ".join(c.name for c in o.lm_train_corpus)
                rows.append(_row(8, "--dumpdir", o.lm_text, what, None, 5, size))
            lm_config = o.lm_config

            def lm() -> Trainer:
                return self.models.lm(lm_config, o.lm_args, vocabulary)

            rows.append(self.trainer_row(8, o.lm_dir, "letter LM", lm, None))

        def asr() -> Trainer:
            return self.models.finetuned(o.asr_config, o.asr_args, o.it2_config, vocabulary)

        hours = self.size(o.finetune_set).hours
        for exp in o.asr_exps:
            rows.append(self.trainer_row(8, exp, "CTC fine-tuning", asr, hours))
        if o.num_splits_asr > 1:
            folder = o.dumpdir / "raw" / o.finetune_set / f"split{o.num_splits_asr}"
            rows.append(self.split_row(8, folder, o.num_splits_asr, o.finetune_set, 0.0))
        return rows

    # stage 9 ----------------------------------------------------------------------------------
    def stage9(self) -> List[Row]:
        o = self.o
        sets: List[str] = []
        if any(m in LOGPROB_MODES for m in o.decode_modes):
            sets += list(o.test_sets)
        if any(m in TUNED_MODES for m in o.decode_modes):
            sets.append(o.valid_set)
        sets = list(dict.fromkeys(sets))
        if not sets:
            return []
        letters = token_count(o.token_list, LETTERS)
        hours = sum(self.size(s).hours for s in sets)
        size = hours * 3600 * FRAME_RATE * letters * FLOAT32
        what = f"CTC log-probs of {', '.join(sets)} ({letters} tokens, 50 Hz, float32)"
        files = 4 * o.inference_nj * len(sets)
        return [
            _row(9, "--expdir", exp / "ctc_logprobs", what, hours, files, size)
            for exp in o.asr_exps
        ]

    # stage 11 ---------------------------------------------------------------------------------
    def finetuned_bytes(self) -> int:
        """The fine-tuned model's weights (the SSL model without its heads, the CTC layer)."""
        o = self.o
        vocabulary = token_count(o.token_list, LETTERS)
        return self.models.finetuned(o.asr_config, o.asr_args, o.it2_config, vocabulary).model_bytes

    def packed_bytes(self) -> int:
        """A packed model: the fine-tuned model and its SSL model, stored as they are."""
        o = self.o
        return (
            self.finetuned_bytes() + self.models.ssl(o.it2_config, o.pretrain_args)[0].model_bytes
        )

    def model_rows(
        self, stage: int, folder: str, marker: str, what: str, size_of: Callable[[], int]
    ) -> List[Row]:
        """Per run, ``<asr exp>/<folder>`` holding ``size_of()`` bytes (computed once); what it
        holds when ``<asr exp>/<marker>`` says it is done."""
        rows, size = [], None
        for exp in self.o.asr_exps:
            if list(exp.glob(marker)):
                there = folder_bytes(exp / folder)
                rows.append(_row(stage, "--expdir", exp / folder, f"{what} (done)", None, 1, there))
                continue
            size = size_of() if size is None else size
            rows.append(_row(stage, "--expdir", exp / folder, what, None, 1, size))
        return rows

    def stage11(self) -> List[Row]:
        what = "zip of the fine-tuned model and its SSL model"
        return self.model_rows(11, "packed", "packed/*.zip.done", what, self.packed_bytes)

    # stage 12 ---------------------------------------------------------------------------------
    def stage12(self) -> List[Row]:
        if not self.o.hub_folders:
            return []
        what = "Hub folder: the zip unpacked, its model card"
        rows = self.model_rows(12, "hub", "hub.done", what, self.packed_bytes)
        if self.o.hub_transformers:
            what = "transformers export: the fine-tuned model in float32, its card"
            rows += self.model_rows(
                12, "hub_transformers", "hub_transformers.done", what, self.finetuned_bytes
            )
        return rows

    def rows(self) -> List[Row]:
        stages: Dict[int, Callable[[], List[Row]]] = {
            1: self.stage1,
            2: self.stage2,
            3: self.stage3,
            4: self.stage4,
            5: self.stage5,
            6: self.stage6,
            7: self.stage7,
            8: self.stage8,
            9: self.stage9,
            11: self.stage11,
            12: self.stage12,
        }
        rows: List[Row] = []
        if self.o.label_model:  # ils.sh skips iteration 1
            del stages[3], stages[4]
        for stage in range(self.o.stage, self.o.stop_stage + 1):
            if stage in stages:
                rows.extend(stages[stage]())
        return rows


def plan_rows(
    opts: RunOptions, models: Optional[ModelSizes] = None
) -> Tuple[List[Row], Dict[str, SetSize]]:
    """The rows of the stages ``opts.stage`` .. ``opts.stop_stage``, and the sizes of the sets
    they used (set -> :class:`SetSize`)."""
    planner = _Planner(opts, models or ModelSizes())
    rows = planner.rows()
    return rows, dict(planner.sizes)


# ---------------------------------------------------------------------------------------------
# Filesystems


@dataclass
class Filesystem:
    """A filesystem a run writes to: its mount point, ``free`` bytes and the rows on it."""

    mount: Path
    free: int
    rows: List[Row]

    @property
    def to_write(self) -> int:
        return sum(r.to_write for r in self.rows)


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (absolute)."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    path = existing_ancestor(path).resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


def filesystems(rows: Sequence[Row], disk_usage: Optional[Callable] = None) -> List[Filesystem]:
    """Group ``rows`` by the filesystem of their folders (the nearest existing ancestor's);
    ``disk_usage``: a stand-in for ``shutil.disk_usage`` (tests; ``.free`` in bytes)."""
    disk_usage = disk_usage or shutil.disk_usage
    found: Dict[int, Filesystem] = {}
    for row in rows:
        anchor = existing_ancestor(row.folder)
        device = anchor.stat().st_dev
        if device not in found:
            found[device] = Filesystem(mount_point(anchor), int(disk_usage(anchor).free), [])
        found[device].rows.append(row)
    return list(found.values())


def human_bytes(size: float) -> str:
    """``size`` bytes in decimal units: 53.1 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 999.95:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} PB"


def format_plan(
    opts: RunOptions, rows: Sequence[Row], sizes: Mapping[str, SetSize], disks: Sequence[Filesystem]
) -> str:
    """The table ``plan_run`` logs (see the module docstring)."""
    width = max([len("folder"), *(len(str(r.folder)) for r in rows)])
    lines = [
        f"Disk plan of stages {opts.stage}-{opts.stop_stage} (an estimate: espnet_ils/recipe/disk_plan.py "
        "states how each figure is made; --disk_check false skips it)",
        f"{'stage':>5}  {'folder':<{width}} {'audio h':>9} {'files':>11} {'bytes':>10} "
        f"{'there':>10} {'to write':>10}  what",
    ]
    for r in rows:
        hours = "-" if r.hours is None else f"{r.hours:.{1 if r.hours >= 1 else 3}f}"
        lines.append(
            f"{r.stage:>5}  {str(r.folder):<{width}} {hours:>9} {r.files:>11,} "
            f"{human_bytes(r.bytes):>10} {human_bytes(r.there):>10} "
            f"{human_bytes(r.to_write):>10}  {r.what}"
        )
    for name, size in sizes.items():
        lines.append(
            f"  set {name}: {size.hours:.2f} h, {size.utterances:,} utterances ({size.source})"
        )
    for disk in disks:
        verdict = "fits" if disk.to_write <= disk.free else "DOES NOT FIT"
        lines.append(
            f"  filesystem {disk.mount}: {human_bytes(disk.to_write)} to write, "
            f"{human_bytes(disk.free)} free: {verdict}"
        )
    return "\n".join(lines)


def check_space(opts: RunOptions, disks: Sequence[Filesystem]) -> None:
    """Raise :class:`DiskSpaceError` for the first filesystem whose bytes to write exceed its free
    space, naming its folders (by the option that sets each), their bytes and the bytes free."""
    roots = opts.roots()
    for disk in disks:
        if disk.to_write <= disk.free:
            continue
        per_root: Dict[str, int] = {}
        for row in disk.rows:
            per_root[row.root] = per_root.get(row.root, 0) + row.to_write
        folders = ", ".join(
            f"{roots.get(root, '?')}/ ({root}) {human_bytes(size)}"
            for root, size in sorted(per_root.items(), key=lambda item: -item[1])
            if size
        )
        raise DiskSpaceError(
            f"stages {opts.stage}-{opts.stop_stage} would write {human_bytes(disk.to_write)} "
            f"({disk.to_write:,} B, an estimate) on the filesystem of {disk.mount}, which has "
            f"{human_bytes(disk.free)} ({disk.free:,} B) free: {folders}. Free space there, point "
            "those folders at a larger disk, run fewer stages (--stop_stage), or, if the "
            "estimate is wrong for this run, pass --disk_check false"
        )


def plan_run(
    opts: RunOptions,
    models: Optional[ModelSizes] = None,
    disk_usage: Optional[Callable] = None,
) -> Tuple[List[Row], List[Filesystem]]:
    """Log the plan of the run and check it against the free space.

    Args:
        opts: The run's options and folders.
        models: Model sizes (built on first use when None).
        disk_usage: A stand-in for ``shutil.disk_usage`` (tests; ``.free`` in bytes).

    Returns:
        The rows and the filesystems they write to.

    Raises:
        DiskSpaceError: A filesystem cannot hold what the stages write on it.
    """
    rows, sizes = plan_rows(opts, models)
    disks = filesystems(rows, disk_usage)
    logger.info("%s", format_plan(opts, rows, sizes, disks))
    check_space(opts, disks)
    return rows, disks
