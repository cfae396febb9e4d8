"""Forced alignments onto the encoder's 50 Hz frames: the rule at frame edges, MFA TextGrids of a
real LibriSpeech recording, fairseq's frame-level phone files, and the errors that name the file."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile
import yaml
from helpers.models import write_model
from helpers.shared_data import LIBRISPEECH_SAMPLE, needs_sample
from praatio import textgrid

from espnet_ils.analysis.alignments import PhoneSegment, frame_labels, normalize_phone
from espnet_ils.bin.import_alignments import main as import_main
from espnet_ils.data.audio import ENCODER_HOP, MFCC_HOP, num_frames
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.train.tasks import ILSSSLTask

SAMPLE = LIBRISPEECH_SAMPLE / "dev-clean" / "1988" / "24833"
RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
UTT = "1988-24833-0000"
# (phone, start, end) in seconds; a gap between 0.60 and 0.64 is silence too.
PHONES = [("", 0.0, 0.30), ("HH", 0.30, 0.40), ("AH0", 0.40, 0.52), ("L", 0.52, 0.60),
          ("OW1", 0.64, 0.90), ("spn", 0.90, 1.10)]  # fmt: skip


@pytest.mark.parametrize("num_samples", [400, 719, 720, 16000, 16321])
@pytest.mark.parametrize("hop", [ENCODER_HOP, MFCC_HOP])
def test_a_frame_takes_the_phone_at_the_centre_of_its_window(num_samples, hop):
    segments = [PhoneSegment("ah", 0.0, 0.5), PhoneSegment("s", 0.5, 0.8)]
    labels = frame_labels(segments, num_samples, hop)
    assert len(labels) == (num_samples - 400) // hop + 1 == num_frames(num_samples, hop)
    for t, label in enumerate(labels):
        centre = (t * hop + 200) / 16000
        assert label == ("ah" if centre < 0.5 else "s" if centre < 0.8 else "sil")


def test_phones_lose_stress_and_silence_marks_become_sil():
    assert [normalize_phone(p) for p in ("AH0", "OW1", "ng", "", "sp", "spn", "SIL")] == [
        "ah", "ow", "ng", "sil", "sil", "sil", "sil"
    ]  # fmt: skip


def write_textgrid(path: Path, duration: float, phones=PHONES, tier: str = "phones") -> None:
    """An MFA-style TextGrid: words and phones tiers; the last phone runs to the end of the audio."""
    entries = [*phones[:-1], (phones[-1][0], phones[-1][1], duration)]
    grid = textgrid.Textgrid()
    grid.addTier(textgrid.IntervalTier("words", [(0.3, 0.9, "hello")], 0, duration))
    intervals = [(start, end, label) for label, start, end in entries if label]
    grid.addTier(textgrid.IntervalTier(tier, intervals, 0, duration))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)


@pytest.fixture
def lengths(tmp_path) -> Path:
    """utt2num_samples of the real recording and of one without an alignment."""
    samples = soundfile.info(str(SAMPLE / f"{UTT}.flac")).frames
    path = tmp_path / "utt2num_samples"
    path.write_text(f"{UTT} {samples}\n1988-24833-0001 16000\n")
    return path


def expected_labels(num_samples: int):
    """The rule written out for PHONES: sil until 0.30, hh, ah, l, sil in the gap, ow, then sil."""
    bounds = [(0.30, "sil"), (0.40, "hh"), (0.52, "ah"), (0.60, "l"), (0.64, "sil"), (0.90, "ow")]
    labels = []
    for t in range(num_frames(num_samples)):
        centre = 0.02 * t + 0.0125
        labels.append(next((label for end, label in bounds if centre < end), "sil"))
    return labels


@needs_sample
def test_textgrids_of_a_librispeech_recording_land_on_the_encoder_frames(tmp_path, lengths):
    num_samples = int(read_key_file(lengths)[UTT])
    write_textgrid(tmp_path / "mfa" / "1988" / f"{UTT}.TextGrid", num_samples / 16000)
    output = tmp_path / "dev" / "phone_alignment"
    args = ["--data_dir", str(lengths.parent), "--output", str(output), "--max_unaligned", "0.5"]
    import_main(["--source", str(tmp_path / "mfa"), *args])
    labels = read_key_file(output)[UTT].split()
    assert labels == expected_labels(num_samples)
    assert (tmp_path / "dev" / "phone_alignment.unaligned").read_text() == "1988-24833-0001\n"

    # The same phones as a 100 Hz frame-level file (fairseq's format) give the same frames.
    frames = [next((p for p, s, e in PHONES if s <= (j + 0.5) / 100 < e), "sil")
              for j in range(round(num_samples / 160))]  # fmt: skip
    tsv = tmp_path / "fairseq" / "dev.tsv"
    tsv.parent.mkdir()
    tsv.write_text(f"{UTT}\t{','.join(p or 'sil' for p in frames)}\n")
    for source in (tsv, tsv.parent):  # the file, or the directory holding it (and no TextGrid)
        output.unlink()
        import_main(["--source", str(source), "--frame_rate", "100", *args])
        assert read_key_file(output)[UTT].split() == labels


@needs_sample
def test_too_many_unaligned_utterances_stop_the_import(tmp_path, lengths):
    num_samples = int(read_key_file(lengths)[UTT])
    write_textgrid(tmp_path / "mfa" / f"{UTT}.TextGrid", num_samples / 16000)
    output = tmp_path / "phone_alignment"
    with pytest.raises(SystemExit, match=r"1 of 2 utterances .* no alignment .*'1988-24833-0001'"):
        import_main(
            ["--source", str(tmp_path / "mfa"), "--data_dir", str(lengths.parent),
             "--output", str(output)]
        )  # fmt: skip
    assert not output.exists()


def test_bad_alignments_are_named(tmp_path):
    lengths = tmp_path / "utt2num_samples"
    lengths.write_text("u1 32000\n")
    output = str(tmp_path / "phone_alignment")

    def run(source: Path, *extra: str) -> None:
        import_main(["--source", str(source), "--data_dir", str(lengths.parent), "--output", output,
                     *extra])  # fmt: skip

    write_textgrid(tmp_path / "long" / "u1.TextGrid", 3.0)  # the audio lasts 2 s
    with pytest.raises(ValueError, match=r"utterance u1: the alignment ends at 3.000 s but the audio lasts 2.000 s"):  # fmt: skip
        run(tmp_path / "long")
    write_textgrid(tmp_path / "tier" / "u1.TextGrid", 2.0, tier="segments")
    with pytest.raises(ValueError, match=r"u1.TextGrid: no tier 'phones'; tiers: \['words', 'segments'\]"):  # fmt: skip
        run(tmp_path / "tier")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "u1.TextGrid").write_text('File type = "ooTextFile"\nnot a grid\n')
    with pytest.raises(ValueError, match=r"broken/u1.TextGrid: not a readable TextGrid"):
        run(tmp_path / "broken")
    (tmp_path / "bad.tsv").write_text("u1 sil,sil\n")
    with pytest.raises(ValueError, match=r"bad.tsv:1: expected 'utt<TAB>p1,p2,...'"):
        run(tmp_path / "bad.tsv")
    with pytest.raises(FileNotFoundError, match=r"--source .*nowhere: no such file or directory"):
        run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"empty: no \*.TextGrid under it and no \*.tsv in it"
    ):
        run(tmp_path / "empty")


@pytest.mark.slow
@needs_sample
def test_stages_5_and_7_score_librispeech_sets_against_textgrids(tmp_path):
    """ils.sh stages 1-2 and 5-7 on LibriSpeech's layout: TextGrids for dev_clean and dev_other
    (written here, phones spread evenly), an iteration-1 model with random weights in place of
    stages 3-4, one step of iteration-2 pretraining;
    k-means fitted on part of train_clean_100, both dev sets scored; --it2_layer auto chooses the
    iteration-1 block with the highest PNMI in stage 5, and later runs read the choice back."""
    root = tmp_path / "LibriSpeech"
    for subset, source in (("dev-clean", "dev-clean"), ("dev-other", "test-clean"),
                           ("test-clean", "test-clean"), ("train-clean-100", "dev-clean")):  # fmt: skip
        shutil.copytree(LIBRISPEECH_SAMPLE / source, root / subset)
    mfa = tmp_path / "mfa"
    for subset in ("dev-clean", "test-clean"):
        for flac in (LIBRISPEECH_SAMPLE / subset).rglob("*.flac"):
            duration = soundfile.info(str(flac)).duration
            step = duration / 20
            phones = [
                (("AA1", "B", "K", "sil")[i % 4], i * step, (i + 1) * step) for i in range(20)
            ]
            write_textgrid(mfa / subset / f"{flac.stem}.TextGrid", duration, phones)
    args = [
        *("--corpus", "librispeech", "--train_set", "train_clean_100", "--valid_set", "dev_clean"),
        *("--quality_sets", "dev_clean dev_other", "--finetune_set", "train_clean_100"),
        *(
            "--test_sets",
            "test_clean",
            "--it1_config",
            "conf/tuning/train_ssl_hubert_mini_it1.yaml",
        ),
        *("--it2_config", "conf/tuning/train_ssl_ils_mini.yaml", "--it1_n_clusters", "100"),
        *("--asr_config", "conf/tuning/train_asr_ctc_mini.yaml", "--it2_layer", "auto"),
        *(
            "--it2_n_clusters",
            "100",
            "--phone_alignments",
            str(mfa),
            "--quality_fit_hours",
            "0.005",
        ),
        *("--quality_n_clusters", "8", "--nj", "1", "--inference_nj", "1"),
        *("--min_wav_duration", "1", "--ngpu", "0"),
        # a value with [...] reaches ESPnet as written, even beside a file its glob would match
        *(
            "--pretrain_args",
            "--max_epoch 1 --num_iters_per_epoch 1 --batch_bins 64000 "
            "--scheduler_conf warmup_steps_list=[0,1,2]",
        ),
        *("--probe_tasks", "", "--probe_pr_config", "conf/tuning/train_probe_pr_mini.yaml"),
        *("--probe_args", "--max_epoch 1 --num_iters_per_epoch 2 --batch_bins 64000"),
    ]
    dirs = {name: tmp_path / name for name in ("data", "dump", "exp")}
    args += [arg for name, path in dirs.items() for arg in (f"--{name}dir", str(path))]
    env = {**os.environ, "LIBRISPEECH": str(root)}

    def stages(first: int, last: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["./ils.sh", *args, "--stage", str(first), "--stop_stage", str(last)],
            cwd=RECIPE, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    result = stages(1, 2)
    assert result.returncode == 0, result.stderr[-3000:]
    result = stages(7, 7)
    assert result.returncode != 0 and "--it2_layer auto: no block chosen yet" in result.stderr

    tokens = [str(c) for c in range(100)] + ["<unk>"]
    for config, exp in (("train_ssl_hubert_mini_it1", "ssl_it1_mfcc_km100_hubert"),):
        config = yaml.safe_load((RECIPE / "conf/tuning" / f"{config}.yaml").read_text())
        write_model(ILSSSLTask, config, tokens, dirs["exp"] / exp)
    glob_match = RECIPE / "warmup_steps_list=0"
    glob_match.touch()
    try:
        result = stages(5, 7)  # stage 6: one step of iteration-2 pretraining
    finally:
        glob_match.unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    choice = dirs["exp"] / "cluster_quality_it1_mfcc_km100"
    table = [line.split("\t") for line in (choice / "cluster_quality.tsv").read_text().splitlines()]
    pnmi = {int(row[1]): float(row[4]) for row in table[1:]}
    block = max(range(1, 5), key=lambda layer: pnmi[layer])
    assert (choice / "chosen_block").read_text() == f"{block}\n"
    assert f"--it2_layer auto: block {block}; PNMI per layer" in result.stderr
    tag = f"it2_L{block}_km100"
    assert read_key_file(dirs["dump"] / "labels" / tag / "dev_clean" / "text")
    assert f"ssl_{tag}_ils_seed0" in (dirs["exp"] / "runs.tsv").read_text()
    trained = yaml.safe_load((dirs["exp"] / f"ssl_{tag}_ils_seed0" / "config.yaml").read_text())
    assert trained["scheduler_conf"]["warmup_steps_list"] == [0, 1, 2]
    for dset, count in (("dev_clean", 10), ("dev_other", 4)):
        alignment = read_key_file(dirs["dump"] / "raw" / dset / "phone_alignment")
        assert len(alignment) == count and set(" ".join(alignment.values()).split()) == {
            "aa", "b", "k", "sil"
        }  # fmt: skip
    out = dirs["exp"] / f"cluster_quality_{tag}"
    rows = (out / "cluster_quality.tsv").read_text().splitlines()
    assert [row.split("\t")[:2] for row in rows[1:]] == [["ils_seed0", str(k)] for k in range(5)]
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["scored_utterances"] == 14 and protocol["n_clusters"] == 8
    assert protocol["fit"] == str(dirs["dump"] / "raw" / "train_clean_100")
    assert 0 < protocol["fit_utterances"] < 10  # 18 s of the 10 utterances' 2 min
    assert "skipped: done with the same options and inputs" in stages(7, 7).stderr

    args[args.index("conf/tuning/train_ssl_ils_mini.yaml")] = (
        "conf/tuning/train_ssl_ils_conformer_mini.yaml"
    )
    result = stages(7, 7)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "Stage 7: cluster quality skipped: the per-block analysis needs the ils_transformer encoder"
        in result.stderr
    )
    args[args.index("conf/tuning/train_ssl_ils_conformer_mini.yaml")] = (
        "conf/tuning/train_ssl_ils_mini.yaml"
    )

    # The phone-recognition probe learns the TextGrids' phones of train_clean_100 (dev-clean's
    # utterances here), validates on dev_clean and is scored on test_clean.
    args[args.index("--probe_tasks") + 1] = "pr"
    result = stages(7, 7)
    assert result.returncode == 0, result.stderr[-3000:]
    probes = dirs["exp"] / f"probes_{tag}"
    assert read_key_file(dirs["dump"] / "probe" / "pr" / "test_clean" / "text") == {
        utt: " ".join(["aa b k"] * 5)
        for utt in read_key_file(dirs["dump"] / "raw" / "test_clean" / "wav.scp")
    }  # the 20 segments' phones, silence left out
    rows = [row.split("\t") for row in (probes / "probes.tsv").read_text().splitlines()]
    assert [row[:3] for row in rows[1:]] == [["ils_seed0", "pr", "PER test_clean (%)"]]
    weights = (probes / "layer_weights.tsv").read_text().splitlines()[1:]
    assert sum(float(row.split("\t")[-1]) for row in weights) == pytest.approx(1.0, abs=1e-3)
    args[args.index("--probe_tasks") + 1] = ""

    (mfa / "test-clean" / "1089-134686-0000.TextGrid").unlink()  # 1 of 4 dev_other utterances
    result = stages(7, 7)
    assert result.returncode != 0
    assert "1 of 4 utterances" in result.stderr and "1089-134686-0000" in result.stderr
