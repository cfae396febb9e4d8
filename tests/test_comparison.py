"""The arm comparison of stage 10 reads runs from the manifest and scores from result.txt files."""

from pathlib import Path

import pytest

from espnet_ils.analysis.comparison import read_runs
from espnet_ils.analysis.probes import write_probe_results
from espnet_ils.bin.compare_runs import main as compare_main
from espnet_ils.bin.score import main as score_main

REFERENCE = {"u1": "THE CAT SAT", "u2": "A DOG RAN"}
# Hypotheses per run: word errors 1/6, 3/6 (ils) and 2/6, 2/6 (hubert).
HYPOTHESES = {
    "ils_seed0": {"u1": "THE CAT SAT", "u2": "A DOG RUN"},
    "ils_seed1": {"u1": "THE BAT SAT", "u2": "A LOG RUN"},
    "hubert_seed0": {"u1": "THE CAT SET", "u2": "A DOG RUN"},
    "hubert_seed1": {"u1": "THE CAT", "u2": "DOG RAN"},
}


def write_text(path: Path, entries: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{utt} {text}\n" for utt, text in entries.items()))


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """Scored greedy decodings of four runs in directories whose names say nothing of arm or seed,
    a manifest naming them, and a cluster-quality table."""
    write_text(tmp_path / "dump" / "test" / "text", REFERENCE)
    rows = ["run\tarm\tseed\titeration\tssl_config\tssl_exp\tasr_config\tasr_exp"]
    for number, (run, hyps) in enumerate(HYPOTHESES.items()):
        arm, seed = run.split("_seed")
        decode = tmp_path / f"model_{number}" / "decode_greedy" / "test"
        write_text(decode / "text", hyps)
        score_main(
            ["--ref_dir", str(tmp_path / "dump"), "--results", str(tmp_path / "R.md"), str(decode)]
        )
        rows.append(
            f"{run}\t{arm}\t{seed}\tit2\tc.yaml\tssl_{number}\tasr.yaml\t{decode.parent.parent}"
        )
    (tmp_path / "runs.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "quality.tsv").write_text(
        "model\tlayer\tphone_purity\tcluster_purity\tpnmi\n"
        "ils_seed0\t1\t0.5\t0.2\t0.40\nils_seed1\t1\t0.5\t0.2\t0.44\n"
        "hubert_seed0\t1\t0.5\t0.2\t0.30\nhubert_seed1\t1\t0.5\t0.2\t0.31\n"
        "other_model\t1\t0.5\t0.2\t0.99\n"
    )
    return tmp_path


def compare(experiment: Path, *args: str) -> Path:
    """``compare_runs`` on the experiment's manifest and test set; returns the table's path."""
    output = experiment / "comparison.md"
    compare_main(
        ["--runs", str(experiment / "runs.tsv"), "--test_set", "test", "--output", str(output)]
        + list(args)
    )
    return output


def test_the_table_gives_means_spreads_and_the_verdict(experiment: Path, capsys):
    output = compare(experiment, "--cluster_quality", str(experiment / "quality.tsv"))
    lines = output.read_text().splitlines()
    assert capsys.readouterr().out.splitlines() == lines
    assert (
        lines[0]
        == "| metric | ils (mean, spread) | hubert (mean, spread) | ils - hubert | vs. seed spread |"
    )
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[2:]}
    # WER (result.txt has one decimal): ils 16.7 and 50.0, hubert 33.3 twice.
    assert rows["WER greedy (%)"][:3] == ["33.350 (33.300)", "33.300 (0.000)", "+0.050"]
    assert rows["WER greedy (%)"][3].startswith("within spread 33.300")
    # PNMI: 0.42 (0.04) vs 0.305 (0.01): the difference is beyond both spreads; other_model is ignored.
    assert rows["PNMI layer 1"] == [
        "0.420 (0.040)",
        "0.305 (0.010)",
        "+0.115",
        "beyond spread 0.040 |",
    ]


def test_the_probes_rows_come_from_their_tsv(experiment: Path):
    """Stage 7's probes.tsv (``espnet_ils.analysis.probes.write_probe_results``) gives one row per metric."""
    rows = [
        dict(model=run, task="pr", metric="PER test (%)", value=value)
        for run, value in (("ils_seed0", 70.0), ("ils_seed1", 72.0), ("hubert_seed0", 75.0),
                           ("hubert_seed1", 76.0), ("other_model", 1.0))
    ]  # fmt: skip
    write_probe_results(rows, experiment / "probes.tsv")
    lines = compare(experiment, "--probes", str(experiment / "probes.tsv")).read_text()
    row = [line for line in lines.splitlines() if line.startswith("| PER test (%) |")]
    assert row == [
        "| PER test (%) | 71.000 (2.000) | 75.500 (1.000) | -4.500 | beyond spread 2.000 |"
    ]


def test_one_seed_says_no_spread(experiment: Path):
    manifest = experiment / "runs.tsv"
    manifest.write_text(
        "".join(line + "\n" for line in manifest.read_text().splitlines() if "seed1" not in line)
    )
    row = compare(experiment).read_text().splitlines()[3]
    assert row.startswith("| WER greedy (%) | 16.700 (one seed) | 33.300 (one seed) | -16.600 |")
    assert row.endswith("| no spread measured (one seed) |")


def test_a_bad_manifest_is_named(experiment: Path):
    manifest = experiment / "runs.tsv"
    with pytest.raises(FileNotFoundError, match="no run manifest"):
        read_runs(experiment / "missing.tsv")
    manifest.write_text("run\tseed\tasr_exp\nils_seed0\t0\tx\n")
    with pytest.raises(
        ValueError, match=r"runs.tsv: missing columns \['arm', 'iteration', 'ssl_exp'\]"
    ):
        read_runs(manifest)
    manifest.write_text(
        "run\tarm\tseed\titeration\tssl_exp\tasr_exp\nils_seed0\tils\tzero\tit2\ts\ta\n"
    )
    with pytest.raises(ValueError, match=r"runs.tsv:2: seed 'zero' is not an integer"):
        read_runs(manifest)


def test_an_unscored_run_is_named(experiment: Path):
    with pytest.raises(FileNotFoundError, match=r"model_0/decode_beam/test/score_cer/result.txt"):
        compare(experiment, "--decode_modes", "beam")
