"""The Hub layout of a packed model (``espnet_ils.export.hub``, ``bin/hub_folder``, ``bin/upload_model``):
the folder is the zip's files and ESPnet's model card; ``Speech2Text.from_pretrained("org/name")``
loads it offline from a Hugging Face cache and decodes as the model from the zip does; zips that
would load files of the training machine are refused; the upload sends exactly the folders; the
recipe's stage 12 writes one folder per run, and its transformers export with its own card, before
the upload, the only networked step."""

import functools
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Dict, Optional

import huggingface_hub
import pytest
import soundfile as sf
import torch
import yaml
from espnet2.bin.asr_inference import Speech2Text
from espnet2.main_funcs.pack_funcs import unpack
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump
from espnet_model_zoo import downloader
from helpers.corpus import ASR_CONFIG, LETTERS, SSL_CONFIG
from helpers.hub_cache import populate_hub_cache
from huggingface_hub.errors import OfflineModeIsEnabled

from espnet_ils.bin import hub_folder, upload_model
from espnet_ils.bin.pack_model import pack_model
from espnet_ils.export.hub import CardInfo, write_hub_folder, write_transformers_card
from espnet_ils.train.tasks import ILSASRTask

REPO = "ils-test/tiny_ctc"
CHECKPOINT = "valid.cer_ctc.best.pth"
RESULTS = "# RESULTS\n\n|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|\n|---|---|---|---|---|---|---|---|---|\n|test|8|8|50.0|50.0|0.0|0.0|50.0|50.0|\n"  # fmt: skip
DECODING = dict(ctc_weight=1.0, lm_weight=0.0, beam_size=1)


@pytest.fixture(scope="module")
def packed(ssl_dir, tmp_path_factory) -> Path:
    """A CTC model (random weights) fine-tuned through ``espnet_ssl`` on a copy of the tiny SSL
    model, over letters and a word separator as stage 8's token list, saved as asr_train saves
    it and packed by ``pack_model`` with a RESULTS.md; the experiment directories are removed, so
    that nothing but the zip can serve the model."""
    root = tmp_path_factory.mktemp("packed")
    ssl_exp, asr_exp = root / "exp" / "ssl_tiny", root / "exp" / "asr_tiny"
    ssl_exp.mkdir(parents=True)
    asr_exp.mkdir()
    shutil.copy(ssl_dir / "config.yaml", ssl_exp / "config.yaml")
    shutil.copy(ssl_dir / "model.pth", ssl_exp / "valid.loss.best.pth")
    (root / "asr.yaml").write_text(yaml.safe_dump(ASR_CONFIG))
    tokens = ["<blank>", "<unk>", *LETTERS, "<space>", "<sos/eos>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    args = ILSASRTask.get_parser().parse_args(
        ["--config", str(root / "asr.yaml"), "--token_list", str(root / "tokens.txt"),
         "--token_type", "char",
         "--frontend_conf", f"frontend_conf.path_or_url={ssl_exp / 'valid.loss.best.pth'}"]
    )  # fmt: skip
    model = ILSASRTask.build_model(args)  # token_list becomes the list itself, as in training
    (asr_exp / "config.yaml").write_text(yaml_no_alias_safe_dump(vars(args)))
    torch.save(model.state_dict(), asr_exp / CHECKPOINT)
    (root / "RESULTS.md").write_text(RESULTS)
    zip_path = root / "asr_tiny.zip"
    pack_model(asr_exp, CHECKPOINT, zip_path, [root / "RESULTS.md"])
    shutil.rmtree(root / "exp")
    return zip_path


def card_of(readme: Path) -> tuple:
    """The model card's front matter (a dict) and its body."""
    _, front, body = readme.read_text().split("---\n", 2)
    return yaml.safe_load(front), body


def test_folder_is_the_zips_files_and_espnets_model_card(packed, tmp_path):
    comparison = tmp_path / "comparison_test.md"
    comparison.write_text("| | ils | hubert |\n|---|---|---|\n| WER greedy | 50.0 | 62.5 |\n")
    outdir = tmp_path / "hub"
    hub_folder.main(
        ["--zip", str(packed), "--outdir", str(outdir), "--repo", REPO, "--results",
         str(packed.parent / "RESULTS.md"), "--results", str(comparison)]
    )  # fmt: skip
    with zipfile.ZipFile(packed) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    files = {str(path.relative_to(outdir)) for path in outdir.rglob("*") if path.is_file()}
    assert files == set(members) | {"README.md"}
    assert {"meta.yaml", "asr/config.yaml", f"asr/{CHECKPOINT}", "ssl/model.pth"} <= files
    assert all((outdir / name).read_bytes() == data for name, data in members.items())
    meta = yaml.safe_load((outdir / "meta.yaml").read_text())
    assert meta["yaml_files"] == {"asr_train_config": "asr/config.yaml"}
    assert meta["files"] == {"asr_model_file": f"asr/{CHECKPOINT}"}

    front, body = card_of(outdir / "README.md")
    assert front == {
        "tags": ["espnet", "audio", "automatic-speech-recognition"],
        "language": "en",
        "datasets": ["librispeech"],
        "license": "cc-by-4.0",
    }
    assert "import espnet_ils" in body and f'"{REPO}", ctc_weight=1.0' in body
    assert RESULTS.splitlines()[-1] in body and "| WER greedy | 50.0 | 62.5 |" in body
    for name in ("asr/config.yaml", "ssl/config.yaml"):
        assert f"<details><summary>{name}</summary>" in body
    assert "path_or_url: ssl/model.pth" in body
    for key in ("wang2022ils", "hsu2021hubert", "watanabe2018espnet"):  # ILS-SSL, HuBERT, ESPnet
        assert re.search(rf"^@\w+\{{{key},$", body, re.MULTILINE)
    assert not outdir.with_name("hub.tmp").exists()


def test_from_pretrained_loads_the_hub_model_offline_and_decodes_as_the_zip(
    packed, ssl_dir, tmp_path, monkeypatch
):
    folder = write_hub_folder(packed, tmp_path / "hub", CardInfo(repo=REPO))
    snapshot = populate_hub_cache(folder, tmp_path / "zoo", REPO)
    # Speech2Text.from_pretrained builds ModelDownloader() with its default cache (the package's
    # own folder): here the test's cache, with huggingface_hub offline (no request is made).
    in_test_cache = functools.partial(downloader.ModelDownloader, tmp_path / "zoo")
    monkeypatch.setattr(downloader, "ModelDownloader", in_test_cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    from_hub = Speech2Text.from_pretrained(REPO, **DECODING)

    config = yaml.safe_load((snapshot / "asr" / "config.yaml").read_text())
    ssl_model = config["frontend_conf"]["frontend_conf"]["path_or_url"]
    assert ssl_model == str(snapshot / "ssl" / "model.pth")  # rewritten by espnet_model_zoo
    files = unpack(packed, tmp_path / "unpacked")
    from_zip = Speech2Text(**files, **DECODING)
    hub_state, zip_state = from_hub.asr_model.state_dict(), from_zip.asr_model.state_dict()
    assert hub_state.keys() == zip_state.keys()
    assert all(torch.equal(hub_state[key], zip_state[key]) for key in hub_state)

    wave, _ = sf.read(ssl_dir / "wav" / "utt3.flac", dtype="float32")
    (text, tokens, _, hyp), *_ = from_hub(wave)
    (zip_text, zip_tokens, _, zip_hyp), *_ = from_zip(wave)
    assert text and (text, tokens) == (zip_text, zip_tokens)
    assert float(hyp.score) == float(zip_hyp.score)
    # The README's other way: from_pretrained on the zip's path unpacks it into the cache.
    (local_text, local_tokens, _, _), *_ = Speech2Text.from_pretrained(str(packed), **DECODING)(
        wave
    )
    assert (local_text, local_tokens) == (text, tokens)


def rezip(source: Path, target: Path, changes: Dict[str, Optional[bytes]]) -> Path:
    """``source`` with the members in ``changes`` replaced (``None``: left out)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            if changes.get(name, b"") is not None:
                new.writestr(name, changes.get(name) or old.read(name))
    return target


def edited_yaml(zip_path: Path, name: str, keys: tuple, value: str) -> bytes:
    with zipfile.ZipFile(zip_path) as archive:
        data = yaml.safe_load(archive.read(name))
    node = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return yaml.safe_dump(data).encode()


@pytest.mark.parametrize(
    "change, message",
    [
        ("not_a_zip", "not a packed model zip"),
        ("no_meta", "holds no meta.yaml"),
        ("ssl_model", "yaml_files has no asr_train_config: not an ASR model"),
        ("missing_weights", r"meta.yaml's files.asr_model_file='asr/gone.pth' is not a file"),
        (
            "absolute_ssl_model",
            r"asr/config.yaml sets frontend_conf.frontend_conf.path_or_url='/train/ssl/model.pth'",
        ),
    ],
)
def test_a_zip_that_the_hub_could_not_load_is_refused_naming_what(
    packed, tmp_path, change, message
):
    bad = tmp_path / "bad.zip"
    if change == "not_a_zip":
        bad.write_bytes(b"not a zip")
    elif change == "no_meta":
        rezip(packed, bad, {"meta.yaml": None})
    elif change == "ssl_model":
        meta = yaml.safe_dump({"yaml_files": {"ssl_train_config": "ssl/config.yaml"}, "files": {}})
        rezip(packed, bad, {"meta.yaml": meta.encode()})
    elif change == "missing_weights":
        meta = edited_yaml(packed, "meta.yaml", ("files", "asr_model_file"), "asr/gone.pth")
        rezip(packed, bad, {"meta.yaml": meta})
    else:
        keys = ("frontend_conf", "frontend_conf", "path_or_url")
        config = edited_yaml(packed, "asr/config.yaml", keys, "/train/ssl/model.pth")
        rezip(packed, bad, {"asr/config.yaml": config})
    outdir = tmp_path / "hub"
    with pytest.raises(ValueError, match=message):
        write_hub_folder(bad, outdir, CardInfo(repo=REPO))
    assert not outdir.exists() and not outdir.with_name("hub.tmp").exists()


def test_transformers_export_gets_its_own_card_pointing_at_the_espnet_model(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    with pytest.raises(ValueError, match="holds no config.json: not a transformers export"):
        write_transformers_card(export, CardInfo(repo=f"{REPO}-transformers"), REPO)
    (export / "config.json").write_text('{"model_type": "wavlm"}')
    card = CardInfo(repo=f"{REPO}-transformers", datasets=["librispeech", "libri-light"])
    front, body = card_of(write_transformers_card(export, card, REPO))
    assert front["library_name"] == "transformers" and front["datasets"] == card.datasets
    assert front["pipeline_tag"] == "automatic-speech-recognition"
    assert f'pipeline("automatic-speech-recognition", model="{REPO}-transformers")' in body
    assert f"(https://huggingface.co/{REPO})" in body


def test_hub_folder_writes_the_exports_card_alone_leaving_the_hub_folder(packed, tmp_path, capsys):
    """Stage 12 exports from the Hub folder, then writes the export's card without rewriting it."""
    hub = write_hub_folder(packed, tmp_path / "hub", CardInfo(repo=REPO))
    before = {path: path.stat().st_mtime_ns for path in hub.rglob("*")}
    export = tmp_path / "export"
    export.mkdir()
    (export / "config.json").write_text('{"model_type": "wavlm"}')
    hub_folder.main(["--repo", REPO, "--results", str(packed.parent / "RESULTS.md"),
                     "--transformers_dir", str(export)])  # fmt: skip
    front, body = card_of(export / "README.md")
    assert front["library_name"] == "transformers" and f"### `{REPO}-transformers`" in body
    assert RESULTS.splitlines()[-1] in body
    assert {path: path.stat().st_mtime_ns for path in hub.rglob("*")} == before
    for cmd, message in (
        (["--repo", REPO], "nothing to write"),
        (["--repo", REPO, "--zip", str(packed)], "--zip and --outdir go together"),
    ):
        with pytest.raises(SystemExit):
            hub_folder.main(cmd)
        assert message in capsys.readouterr().err


class RecordingHfApi:
    """Stands in for ``huggingface_hub.HfApi``: records the calls the upload makes."""

    calls: list = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))


def test_upload_sends_each_folder_whole_to_its_repository(packed, tmp_path, monkeypatch):
    folder = write_hub_folder(packed, tmp_path / "hub", CardInfo(repo=REPO))
    export = tmp_path / "export"
    export.mkdir()
    (export / "config.json").write_text("{}")
    cmd = ["--folder", str(folder), "--repo", REPO, "--transformers_dir", str(export)]
    with pytest.raises(FileNotFoundError, match="no config.json or README.md there"):
        upload_model.main(cmd)  # the export has no card yet
    write_transformers_card(export, CardInfo(repo=f"{REPO}-transformers"), REPO)
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHfApi)
    monkeypatch.setattr(RecordingHfApi, "calls", [])
    upload_model.main(cmd)
    created = [repo for call, repo, _ in RecordingHfApi.calls if call == "create_repo"]
    uploads = [(repo, kw) for call, repo, kw in RecordingHfApi.calls if call == "upload_folder"]
    assert created == [REPO, f"{REPO}-transformers"]
    assert [(repo, Path(kw["folder_path"])) for repo, kw in uploads] == [
        (REPO, folder),
        (f"{REPO}-transformers", export),
    ]
    assert all(kw["delete_patterns"] == "*" for _, kw in uploads)  # the repo = the folder


def test_upload_without_the_hub_says_what_it_needs(packed, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="with python -m espnet_ils.bin.hub_folder"):
        upload_model.main(["--folder", str(tmp_path / "none"), "--repo", REPO])
    folder = write_hub_folder(packed, tmp_path / "hub", CardInfo(repo=REPO))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # requests refused
    with pytest.raises(
        RuntimeError, match=f"cannot upload {folder} to .* {REPO}: .*a token"
    ) as error:
        upload_model.main(["--folder", str(folder), "--repo", REPO])
    assert isinstance(error.value.__cause__, OfflineModeIsEnabled)  # no request left this machine


RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
MINI = ["--corpus", "mini", "--it2_layer", "2", "--it2_n_clusters", "100", "--test_sets", "test"]


def tiny_configs(root: Path) -> list:
    """ils.sh's config options naming the configs of the ``packed`` model (its pretraining config
    without a cluster count, which the checks take from the token list): ones the config check
    before stage 1 builds, and stage 12 can export to transformers."""
    ssl = dict(SSL_CONFIG, loss=[dict(name="ils", conf=dict(layers=[2, 4], final_dim=16))])
    (root / "train_ssl_tiny.yaml").write_text(yaml.safe_dump(ssl))
    (root / "train_asr_tiny.yaml").write_text(yaml.safe_dump(ASR_CONFIG))
    return ["--it1_config", str(root / "train_ssl_tiny.yaml"),
            "--it2_config", str(root / "train_ssl_tiny.yaml"),
            "--asr_config", str(root / "train_asr_tiny.yaml")]  # fmt: skip


def run_stage_12(expdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``ils.sh``'s stage 12 for the ILS run and baseline (seed 0) in ``expdir``, with
    huggingface_hub offline: an upload fails before any request leaves."""
    return subprocess.run(
        ["./ils.sh", *MINI, *tiny_configs(expdir.parent), "--baseline", "true", "--stage", "12",
         "--disk_check", "false", "--expdir", str(expdir), *args],
        cwd=RECIPE, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )  # fmt: skip


def test_stage_12_writes_each_runs_folders_first_and_only_uploads_when_asked(packed, tmp_path):
    expdir = tmp_path / "exp"
    hubs = {}
    for run in ("ils_seed0", "hubert_seed0"):
        asr_exp = expdir / f"asr_it2_L2_km100_{run}_train_asr_tiny"
        (asr_exp / "packed").mkdir(parents=True)
        shutil.copy(packed, asr_exp / "packed" / f"{asr_exp.name}.zip")
        (asr_exp / "packed" / f"{asr_exp.name}.zip.done").write_text("{}")
        hubs[run] = asr_exp / "hub"
    (expdir / "RESULTS.md").write_text(RESULTS)
    (expdir / ".scoring.done").write_text("{}")
    (expdir / "comparison_test.md").write_text(
        "| | ils | hubert |\n|---|---|---|\n| WER | 1 | 2 |\n"
    )
    with zipfile.ZipFile(packed) as archive:
        tokens = yaml.safe_load(archive.read("asr/config.yaml"))["token_list"]

    result = run_stage_12(expdir, "--hf_repo", REPO, "--hf_upload", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    for run, hub in hubs.items():  # two runs: one repository each
        repo, export = f"{REPO}_{run}", hub.with_name("hub_transformers")
        front, body = card_of(hub / "README.md")
        assert f"### `{repo}`" in body and front["datasets"] == ["mini"]
        assert "| WER | 1 | 2 |" in body and RESULTS.splitlines()[-1] in body
        assert (hub / "meta.yaml").is_file() and (hub.parent / "hub.done").is_file()
        # the transformers export of the Hub folder's model, with its own card
        config = json.loads((export / "config.json").read_text())
        assert config["architectures"] == ["WavLMForCTC"] and config["vocab_size"] == len(tokens)
        assert json.loads((export / "vocab.json").read_text()) == {  # word separator: "|"
            {"<space>": "|"}.get(token, token): index for index, token in enumerate(tokens)
        }
        for name in ("model.safetensors", "tokenizer_config.json", "processor_config.json"):
            assert (export / name).is_file(), name
        front, body = card_of(export / "README.md")
        assert front["library_name"] == "transformers" and front["datasets"] == ["mini"]
        assert f'pipeline("automatic-speech-recognition", model="{repo}-transformers")' in body
        assert f"(https://huggingface.co/{repo})" in body and "| WER | 1 | 2 |" in body
        assert (hub.parent / "hub_transformers.done").is_file()
        assert (
            f"not uploaded (--hf_upload false): {hub} -> https://huggingface.co/{repo}, {export} "
            f"-> https://huggingface.co/{repo}-transformers"
        ) in result.stderr

    result = run_stage_12(expdir, "--hf_repo", REPO)  # stops at the first run's upload
    assert result.returncode != 0
    for folder in ("hub", "hub_transformers"):
        path = hubs["ils_seed0"].with_name(folder)
        assert f"{path}: skipped: done with the same options" in result.stderr
    assert f"cannot upload {hubs['ils_seed0']} to Hugging Face repository {REPO}_ils_seed0" in (
        result.stderr
    )
