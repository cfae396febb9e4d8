"""What the recipe's later stages need of the formatted data, checked as soon as it exists.

Stage 2 writes ``<dumpdir>/raw/<set>``; some later stages stop on a set that cannot serve them,
hours into a run: the speaker-identification probe (stage 7) needs 3 utterances per speaker, a
k-means at least as many frames as clusters, a split iterator an utterance in every part, the
fine-tuning, the LMs and the scoring the sets' transcripts. ``ils.sh`` runs :func:`check_data`
(through ``espnet_ils.bin.check_data``) at the end of stage 2, and before a run that starts later
on data formatted before, for the stages it will run and its options: every need that a set
misses is named at once, with the set, what it holds and what the stage needs.

Each need is a :class:`Requirement`: the set, the stages that have it, who needs it (the stage
and option) and a function of the set's folder that says what the folder lacks (None when met).
Counts are computed as the stages compute them (the same seeded choices), so a check passes
exactly when the stage's own check would. Not checked here: a set left empty by the duration
filter (stage 2 stops on it), phone alignments (stages 5 and 7 skip, saying so, what they lack;
imported ones are checked when stage 7 imports them), the shard counts (``--nj`` above the
utterances leaves shards empty, which the jobs handle; decoding caps its shards).
"""

import logging
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence

from espnet_ils.analysis.probes import (
    SID_MIN_UTTERANCES,
    SID_SPLITS,
    phone_transcripts,
    probe_sets,
)
from espnet_ils.data.audio import ENCODER_HOP, MFCC_HOP, num_frames
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.data.splits import key_hash
from espnet_ils.targets.selection import choose_by_duration, choose_portion, choose_utterances

logger = logging.getLogger(__name__)

# The encoder the per-block analysis reads (espnet_ils.layer_features); stage 7 skips the cluster
# quality of other encoders.
BLOCK_ANALYSIS_ENCODER = "ils_transformer"
# Decode modes whose LM learns a set's transcripts by default, and the options that replace them.
TUNED_MODES = ("ngram", "lm_fusion", "lm_rescore")


@dataclass(frozen=True)
class Requirement:
    """One need of one set by later stages.

    ``shortfall(set_dir)`` says what the formatted set lacks (``"no text"``), None when it is
    met; the error reads ``<set_dir>: <shortfall>; <needed_by> needs <need>``.
    """

    set_name: str
    stages: Sequence[int]
    needed_by: str
    need: str
    shortfall: Callable[[Path], Optional[str]]

    def applies(self, first_stage: int, last_stage: int) -> bool:
        return any(first_stage <= stage <= last_stage for stage in self.stages)


@dataclass(frozen=True)
class DataOptions:
    """The options of ``ils.sh`` that decide what its stages read of the formatted sets.

    None and empty sequences mean "not given", as empty values in ``ils.sh``; ``transcribed_set``
    is the set whose transcripts the word n-gram and the letter LM learn by default
    (``--train_set``, or ``--finetune_set`` when the train set has no text).
    """

    train_set: str
    valid_set: str
    finetune_set: str
    test_sets: Sequence[str]
    transcribed_set: str
    seed: int = 0
    label_model: Optional[Path] = None
    label_kmeans: Optional[Path] = None
    it1_n_clusters: int = 100
    it2_n_clusters: int = 500
    it2_layer_auto: bool = False
    it2_encoder: str = BLOCK_ANALYSIS_ENCODER
    kmeans_portion: float = 0.1
    kmeans_max_hours: float = 0.0
    quality_sets: Sequence[str] = ()
    quality_fit_hours: float = 1.0
    quality_n_clusters: int = 500
    phone_alignments: Optional[Path] = None
    num_splits_ssl: int = 1
    num_splits_asr: int = 1
    probe_tasks: Sequence[str] = ()
    probe_pr_train_set: str = ""
    probe_sid_set: str = ""
    decode_modes: Sequence[str] = ()
    ngram_text: Optional[Path] = None
    ngram_arpa: Optional[Path] = None
    lm_train_text: Sequence[str] = ()
    lm_exp: Optional[Path] = None


def read_num_samples(set_dir: Path) -> Mapping[str, int]:
    return {utt: int(n) for utt, n in read_key_file(set_dir / "utt2num_samples").items()}


def missing_file(name: str, set_dir: Path) -> Optional[str]:
    return None if (set_dir / name).is_file() else f"no {name}"


def speaker_shortfall(minimum: int, set_dir: Path) -> Optional[str]:
    """The speaker with the fewest utterances when one has fewer than ``minimum``."""
    if not (set_dir / "utt2spk").is_file():
        return "no utt2spk"
    counts = Counter(read_key_file(set_dir / "utt2spk").values())
    short = sorted((count, speaker) for speaker, count in counts.items() if count < minimum)
    if not short:
        return None
    count, speaker = short[0]
    others = f" (and {len(short) - 1} more of its {len(counts)} speakers have fewer than {minimum})"
    return f"speaker {speaker} has {count} utterance(s)" + (others if len(short) > 1 else "")


def split_shortfall(num_splits: int, set_dir: Path) -> Optional[str]:
    """The first part left empty when the set is cut as ``espnet_ils.splits`` cuts it."""
    utts = read_key_file(set_dir / "wav.scp")
    counts = Counter(key_hash(utt.encode()) % num_splits for utt in utts)
    empty = [part for part in range(num_splits) if counts[part] == 0]
    if not empty:
        return None
    return (
        f"part {empty[0]} of {num_splits} gets none of its {len(utts)} utterances "
        f"({len(empty)} part(s) empty; an utterance's part goes by a hash of its id)"
    )


def frame_shortfall(
    choose: Callable[[Mapping[str, int]], Sequence[str]], hop: int, n_clusters: int, set_dir: Path
) -> Optional[str]:
    """Fewer frames (``hop`` samples apart) than ``n_clusters`` in the utterances ``choose`` picks
    from ``{utt: samples at 16 kHz}`` for a k-means."""
    num_samples = read_num_samples(set_dir)
    chosen = choose(num_samples)
    frames = sum(num_frames(num_samples[utt], hop) for utt in chosen)
    if frames >= n_clusters:
        return None
    return f"the {len(chosen)} utterance(s) k-means is fitted on hold {frames} frames"


def silence_only_shortfall(set_dir: Path) -> Optional[str]:
    """An utterance of the set's own phone alignment without a phone (the pr probe's transcript)."""
    if not (set_dir / "phone_alignment").is_file():
        return None  # stage 7 skips the pr probe, saying so
    try:
        phone_transcripts(set_dir / "phone_alignment")
    except ValueError as error:
        return str(error).removeprefix(f"{set_dir / 'phone_alignment'}: ")
    return None


def text_requirement(set_name: str, stages: Sequence[int], needed_by: str) -> Requirement:
    return Requirement(
        set_name, stages, needed_by, "its transcripts", partial(missing_file, "text")
    )


def split_requirement(
    set_name: str, stages: Sequence[int], option: str, num_splits: int
) -> Requirement:
    return Requirement(
        set_name,
        stages,
        f"ESPnet's split iterator ({option} {num_splits})",
        "an utterance in every part: use fewer parts",
        partial(split_shortfall, num_splits),
    )


def kmeans_requirement(
    set_name: str,
    stages: Sequence[int],
    needed_by: str,
    choose: Callable[[Mapping[str, int]], Sequence[str]],
    hop: int,
    n_clusters: int,
) -> Requirement:
    return Requirement(
        set_name,
        stages,
        needed_by,
        f"at least {n_clusters} frames, one per cluster",
        partial(frame_shortfall, choose, hop, n_clusters),
    )


def aligned(raw_dir: Path, sets: Sequence[str], phone_alignments: Optional[Path]) -> bool:
    """Whether stages 5 and 7 find phone alignments for ``sets`` (as ``ils.sh`` decides: those
    of ``--phone_alignments`` when given, else the sets' own), rather than skip what needs them."""
    if phone_alignments:
        return phone_alignments.exists()
    return all((raw_dir / name / "phone_alignment").is_file() for name in sets)


def data_requirements(options: DataOptions, raw_dir: Path) -> List[Requirement]:
    """Every need of stages 3-12 on the sets in ``raw_dir`` under these options."""
    o = options
    needs: List[Requirement] = []
    if not o.label_model:  # else no iteration 1 (stages 3 and 4)
        needs.append(
            kmeans_requirement(
                o.train_set,
                (3,),
                f"stage 3's k-means (--it1_n_clusters {o.it1_n_clusters}, "
                f"--kmeans_portion {o.kmeans_portion})",
                lambda n: choose_utterances(sorted(n), o.kmeans_portion, o.seed),
                MFCC_HOP,
                o.it1_n_clusters,
            )
        )
    if not o.label_kmeans:  # else stage 5 fits none
        needs.append(
            kmeans_requirement(
                o.train_set,
                (5,),
                f"stage 5's k-means (--it2_n_clusters {o.it2_n_clusters}, --kmeans_portion "
                f"{o.kmeans_portion}, --kmeans_max_hours {o.kmeans_max_hours})",
                lambda n: choose_portion(n, o.kmeans_portion, o.kmeans_max_hours, o.seed),
                ENCODER_HOP,
                o.it2_n_clusters,
            )
        )
    quality_stages = (5,) * o.it2_layer_auto + (7,) * (o.it2_encoder == BLOCK_ANALYSIS_ENCODER)
    if quality_stages and aligned(raw_dir, o.quality_sets, o.phone_alignments):
        needs.append(
            kmeans_requirement(
                o.train_set,
                quality_stages,
                f"the cluster quality's k-means per block (--quality_n_clusters "
                f"{o.quality_n_clusters}, --quality_fit_hours {o.quality_fit_hours})",
                lambda n: choose_by_duration(n, o.quality_fit_hours, o.seed),
                ENCODER_HOP,
                o.quality_n_clusters,
            )
        )
    if o.num_splits_ssl > 1:
        stages = (6,) if o.label_model else (4, 6)
        needs.append(split_requirement(o.train_set, stages, "--num_splits_ssl", o.num_splits_ssl))
    if "sid" in o.probe_tasks:
        needs.append(
            Requirement(
                o.probe_sid_set,
                (7,),
                f"--probe_tasks sid (--probe_sid_set {o.probe_sid_set})",
                f"at least {SID_MIN_UTTERANCES} utterances per speaker (one each for the "
                f"probe's {', '.join(SID_SPLITS)})",
                partial(speaker_shortfall, SID_MIN_UTTERANCES),
            )
        )
    if "pr" in o.probe_tasks and not o.phone_alignments:  # imported ones: checked by the import
        sets = probe_sets("pr", o.probe_pr_train_set, o.valid_set, o.test_sets)
        for name in dict.fromkeys(sets["train"] + sets["valid"] + sets["test"]):
            needs.append(
                Requirement(
                    name,
                    (7,),
                    "--probe_tasks pr",
                    "a phone in every utterance's alignment (its transcript)",
                    silence_only_shortfall,
                )
            )
    needs += [
        text_requirement(o.finetune_set, (8,), "CTC fine-tuning (stage 8, --finetune_set)"),
        text_requirement(o.valid_set, (8,), "CTC fine-tuning's validation (stage 8)"),
    ]
    if o.num_splits_asr > 1:
        needs.append(split_requirement(o.finetune_set, (8,), "--num_splits_asr", o.num_splits_asr))
    word_lm = "ngram" in o.decode_modes
    letter_lm = any(mode.startswith("lm_") for mode in o.decode_modes) and not o.lm_exp
    if word_lm or letter_lm:  # the n-gram's perplexity, the letter LM's dev and left-out text
        needs += [
            text_requirement(name, (8,), "the LMs of --decode_modes (stage 8)")
            for name in (o.valid_set, *o.test_sets)
        ]
    if (word_lm and not o.ngram_arpa and not o.ngram_text) or (letter_lm and not o.lm_train_text):
        needs.append(
            text_requirement(
                o.transcribed_set,
                (8,),
                "the LMs of --decode_modes, trained on it by default (stage 8; --ngram_text, "
                "--ngram_arpa, --lm_train_text or --lm_exp replace it)",
            )
        )
    if any(mode in TUNED_MODES for mode in o.decode_modes):
        needs.append(text_requirement(o.valid_set, (9,), "the LM weights' tuning (stage 9)"))
    needs += [text_requirement(name, (10,), "the scoring (stage 10)") for name in o.test_sets]
    return needs


def check_data(options: DataOptions, raw_dir: Path, first_stage: int, last_stage: int) -> List[str]:
    """What the sets in ``raw_dir`` lack for stages ``first_stage``..``last_stage``, one message
    per unmet need (empty: all met). A set not formatted yet (no ``.done``) is left out: the
    stage that reads it stops on its absence."""
    needs = [n for n in data_requirements(options, raw_dir) if n.applies(first_stage, last_stage)]
    unformatted = {n.set_name for n in needs if not (raw_dir / n.set_name / ".done").is_file()}
    for name in sorted(unformatted):
        logger.info("%s: not formatted (stage 2): its needs are not checked", raw_dir / name)
    problems: List[str] = []
    for need in (n for n in needs if n.set_name not in unformatted):
        set_dir = raw_dir / need.set_name
        found = need.shortfall(set_dir)
        if found is not None:
            problems.append(f"{set_dir}: {found}; {need.needed_by} needs {need.need}")
    return list(dict.fromkeys(problems))
