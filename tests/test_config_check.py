"""Every config is built once before any work: the recipe's own build, the wrong ones stop with
their own error, named by the recipe option, and with stage 12's transformers export a model WavLM
cannot express stops too (espnet_ils.recipe.config_check)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from espnet_ils.recipe.config_check import ConfigError, check_pipeline_configs

CONF = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1/conf/tuning"
MINI = dict(
    it1_config=CONF / "train_ssl_hubert_mini_it1.yaml",
    it1_n_clusters=100,
    it2_config=CONF / "train_ssl_ils_mini.yaml",
    it2_n_clusters=100,
    asr_config=CONF / "train_asr_ctc_mini.yaml",
)


def edited(tmp_path: Path, source: Path, edit) -> Path:
    config = yaml.safe_load(source.read_text())
    edit(config)
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("size", ["mini", "base"])
def test_the_recipe_configs_build(size):
    if size == "mini":
        check_pipeline_configs(**MINI)
    else:  # and stage 12 can export BASE's fine-tuned model to transformers
        check_pipeline_configs(
            CONF / "train_ssl_hubert_base_it1.yaml",
            100,
            CONF / "train_ssl_ils_base_it2.yaml",
            500,
            CONF / "train_asr_ctc_base_10h.yaml",
            transformers_export=True,
        )


def test_a_log_mel_front_is_refused_for_the_transformers_export_naming_the_option():
    """The mini profile's log-mel front has no WavLM counterpart: with --hf_repo and
    --hf_transformers true the run stops before stage 1; with false it goes on."""
    with pytest.raises(ConfigError) as error:
        check_pipeline_configs(**MINI, transformers_export=True)
    message = str(error.value)
    assert message.startswith(f"--asr_config {MINI['asr_config']}: stage 12 exports")
    assert "front end DefaultFrontend: WavLM cannot express it" in message
    assert "log-mel front (frontend: default)" in message
    assert message.endswith("Share the ESPnet model only with --hf_transformers false")
    check_pipeline_configs(**MINI, transformers_export=False)


def test_configs_of_the_other_task_are_named_as_such():
    with pytest.raises(
        ConfigError, match="--asr_config .*train_ssl_ils_mini.yaml is a pretraining"
    ):
        check_pipeline_configs(**dict(MINI, asr_config=MINI["it2_config"]))
    with pytest.raises(
        ConfigError, match="--it2_config .*train_asr_ctc_mini.yaml is a fine-tuning \\(ASR task\\)"
    ):
        check_pipeline_configs(**dict(MINI, it2_config=MINI["asr_config"]))


def test_a_supervised_block_beyond_the_encoder_stops_with_the_models_error(tmp_path):
    def thirteen(config):
        config["loss"][0]["conf"]["layers"] = [13]

    config = edited(tmp_path, MINI["it2_config"], thirteen)
    with pytest.raises(
        ConfigError,
        match="--it2_config .* does not build with the token list of --it2_n_clusters 100: ValueError: loss conf layers=\\[13\\]: block 13",
    ):
        check_pipeline_configs(**dict(MINI, it2_config=config))


def test_intermediate_ctc_in_pretraining_and_unknown_keys_are_named(tmp_path):
    config = edited(
        tmp_path, MINI["it1_config"], lambda c: c["encoder_conf"].update(interctc_layer_idx=[2])
    )
    with pytest.raises(ConfigError, match="--it1_config .*encoder_conf.interctc_layer_idx=\\[2\\]"):
        check_pipeline_configs(**dict(MINI, it1_config=config))
    config = edited(tmp_path, MINI["asr_config"], lambda c: c.update(bogus_key=1))
    with pytest.raises(ConfigError, match="--asr_config .*unrecognized arguments: bogus_key"):
        check_pipeline_configs(**dict(MINI, asr_config=config))


def test_cluster_count_mismatch_names_the_option():
    match = r"--it2_n_clusters 50: .*num_classes=100 \(in .*train_ssl_ils_mini.yaml\) but .* 50 cluster ids"
    with pytest.raises(ConfigError, match=match):
        check_pipeline_configs(**dict(MINI, it2_n_clusters=50))


def test_a_fine_tuning_config_that_cannot_build_stops_with_the_models_error(tmp_path):
    def wrong_type(config):
        config["encoder"] = "transformer"
        config["encoder_conf"] = dict(output_size=256, input_layer="linear", num_blocks="two")

    config = edited(tmp_path, MINI["asr_config"], wrong_type)
    with pytest.raises(
        ConfigError,
        match='--asr_config .* does not build on .*TypeCheckError: argument "num_blocks"',
    ):
        check_pipeline_configs(**dict(MINI, asr_config=config))


def test_without_iteration_1_its_config_is_not_built():
    """ils.sh --label_model: no iteration 1, so its config (here with a cluster count that does not
    fit it) is not read."""
    check_pipeline_configs(**dict(MINI, it1_config=None, it1_n_clusters=7))
    with pytest.raises(ConfigError, match="--it1_n_clusters 7"):
        check_pipeline_configs(**dict(MINI, it1_n_clusters=7))


@pytest.mark.slow
def test_a_check_that_passed_in_the_expdir_is_skipped_until_a_config_changes(tmp_path):
    """ils.sh's --marker: none written where the folder is missing (a run stopped by a bad option
    leaves no expdir), then the check skipped without importing ESPnet until a config changes."""
    asr_config = tmp_path / "asr.yaml"
    shutil.copy(MINI["asr_config"], asr_config)
    args = [f"--{name}={value}" for name, value in {**MINI, "asr_config": asr_config}.items()]
    marker = tmp_path / "exp" / ".configs_checked"

    def check() -> str:
        command = [sys.executable, "-X", "importtime", "-m", "espnet_ils.bin.check_configs"]
        result = subprocess.run(
            [*command, *args, f"--marker={marker}"], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stderr

    assert "espnet2.tasks.asr" in check() and not marker.parent.exists()
    marker.parent.mkdir()
    assert "espnet2.tasks.asr" in check() and marker.exists()
    assert "espnet2" not in check()
    asr_config.write_text(asr_config.read_text() + "\n# edited\n")
    assert "espnet2.tasks.asr" in check()
    # whether stage 12 exports to transformers is part of what passed: checked again, refused
    command = [sys.executable, "-m", "espnet_ils.bin.check_configs", *args, f"--marker={marker}"]
    result = subprocess.run(
        [*command, "--transformers_export=true"], capture_output=True, text=True
    )
    assert result.returncode == 1 and "--hf_transformers false" in result.stderr
