"""The Hugging Face Hub layout of a packed model, as ESPnet's own Hub models hold it.

ESPnet's recipes share a model by unpacking its packed zip at the root of a model repository and
adding a model card (the upload stage of ``egs2/TEMPLATE/asr1/asr.sh``): ``meta.yaml`` names the
configs (``yaml_files``) and the weights (``files``) by paths relative to the root, and the files
lie at those paths. ``Speech2Text.from_pretrained("org/name")`` loads such a repository through
espnet_model_zoo's ``ModelDownloader``: ``snapshot_download`` into its cache, then in each config of
``yaml_files`` every value equal to the relative path of a file in the snapshot becomes that file's
absolute path. A config must therefore name each file it opens by its path relative to the root, as
``espnet_ils.bin.pack_model`` writes our ASR config (its ``espnet_ssl`` front end's SSL model:
``ssl/model.pth``, beside ``ssl/config.yaml``); :func:`write_hub_folder` checks that, so that a model
never reaches for a file on the machine that trained it.

The model card is ESPnet's (``egs2/TEMPLATE/asr1/scripts/utils/TEMPLATE_HF_Readme.md``): YAML front
matter with the tags, language, datasets and licence, then how to load the model, the run's results,
the configs and the citations. Our models' classes come from this plugin, so its usage lines import
``espnet_ils`` before ESPnet builds the model.

    card = CardInfo(repo="user/ils_base", results=[Path("exp/RESULTS.md")])
    write_hub_folder(Path("exp/asr_x/packed/asr_x.zip"), Path("exp/asr_x/hub"), card)
"""

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, List, Sequence

import yaml

from espnet_ils.data.staging import staged_directory

logger = logging.getLogger(__name__)

RECIPE = "egs2/librispeech_ils/ssl1"

# The files Speech2Text opens while it builds an ASR model from its config, by config key.
CONFIG_FILE_KEYS = (
    ("frontend_conf", "frontend_conf", "path_or_url"),  # espnet_ssl: the SSL model
    ("normalize_conf", "stats_file"),
    ("bpemodel",),
    ("token_list",),  # a path, unless training wrote the list itself
)

CITATIONS = r"""@inproceedings{wang2022ils,
  title={Improving Self-Supervised Learning for Speech Recognition with Intermediate Layer Supervision},
  author={Chengyi Wang and Yu Wu and Sanyuan Chen and Shujie Liu and Jinyu Li and Yao Qian and Zhenglu Yang},
  booktitle={Proceedings of IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  year={2022},
  eprint={2112.08778},
  archivePrefix={arXiv}
}

@article{hsu2021hubert,
  title={{HuBERT}: Self-Supervised Speech Representation Learning by Masked Prediction of Hidden Units},
  author={Wei-Ning Hsu and Benjamin Bolte and Yao-Hung Hubert Tsai and Kushal Lakhotia and Ruslan Salakhutdinov and Abdelrahman Mohamed},
  journal={IEEE/ACM Transactions on Audio, Speech, and Language Processing},
  volume={29},
  pages={3451--3460},
  year={2021}
}

@inproceedings{watanabe2018espnet,
  author={Shinji Watanabe and Takaaki Hori and Shigeki Karita and Tomoki Hayashi and Jiro Nishitoba and Yuya Unno and Nelson Yalta and Jahn Heymann and Matthew Wiesner and Nanxin Chen and Adithya Renduchintala and Tsubasa Ochiai},
  title={{ESPnet}: End-to-End Speech Processing Toolkit},
  year={2018},
  booktitle={Proceedings of Interspeech},
  pages={2207--2211},
  doi={10.21437/Interspeech.2018-1456}
}"""


@dataclass
class CardInfo:
    """What a model card says beyond the model's own files.

    Args:
        repo: The Hub repository, ``org/name``: the name the usage lines load.
        results: Markdown files shown under "Results", in order (the run's ``RESULTS.md``, the
            ILS vs HuBERT comparison tables).
        recipe: The recipe that trained the model.
        datasets: The corpora it was trained on (front matter ``datasets``).
        language: ISO 639-1 code of the speech (front matter ``language``).
        license: Licence of the model's files (front matter ``license``, a Hub licence id);
            LibriSpeech's own is CC BY 4.0.
    """

    repo: str
    results: Sequence[Path] = ()
    recipe: str = RECIPE
    datasets: Sequence[str] = field(default_factory=lambda: ["librispeech"])
    language: str = "en"
    license: str = "cc-by-4.0"


def write_hub_folder(zip_path: Path, outdir: Path, card: CardInfo) -> Path:
    """Write ``outdir``: the packed model's files as its zip holds them, and the model card.

    The folder is built beside ``outdir`` and renamed into place, replacing an older one
    (:func:`espnet_ils.data.staging.staged_directory`).

    Args:
        zip_path: A model packed by ``espnet_ils.bin.pack_model`` (or ESPnet's ``pack``).
        outdir: The folder to write, what the Hub repository will hold.
        card: What the model card says beyond the files.

    Returns:
        ``outdir``.

    Raises:
        ValueError: ``zip_path`` is no zip, has no ``meta.yaml``, holds no ASR model, or names
            a file it does not hold (in ``meta.yaml`` or a config); a results file is missing.
    """
    for path in card.results:
        if not Path(path).is_file():
            raise ValueError(f"results file {path} for the model card of {card.repo}: no such file")
    with staged_directory(outdir, replace=True) as tmp:
        unpack_zip(zip_path, tmp)
        meta = read_meta(tmp, zip_path)
        if "asr_train_config" not in meta["yaml_files"]:
            raise ValueError(
                f"{zip_path}: meta.yaml's yaml_files has no asr_train_config: not an ASR model, "
                "which is what Speech2Text.from_pretrained loads"
            )
        for config in meta["yaml_files"].values():
            check_config_paths(tmp, config, zip_path)
        (tmp / "README.md").write_text(espnet_card(tmp, meta, card), encoding="utf-8")
    logger.info("wrote the Hub folder of %s for %s: %s", zip_path, card.repo, outdir)
    return outdir


def unpack_zip(zip_path: Path, outdir: Path) -> None:
    """Extract every member of ``zip_path`` under ``outdir``, unchanged (ESPnet's ``unpack`` would
    rewrite the configs' paths to absolute ones of this machine)."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(outdir)
    except (zipfile.BadZipFile, FileNotFoundError) as error:
        raise ValueError(
            f"{zip_path}: not a packed model zip ({error}); run the packing stage"
        ) from error


def read_meta(folder: Path, source: Path) -> Dict[str, Dict[str, str]]:
    """``meta.yaml``'s ``yaml_files`` and ``files`` of an unpacked model, each a relative path of a
    file in ``folder``: what espnet_model_zoo resolves against a Hub snapshot."""
    meta_path = folder / "meta.yaml"
    if not meta_path.is_file():
        raise ValueError(f"{source} holds no meta.yaml: not packed by ESPnet's pack")
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    entries = {}
    for section in ("yaml_files", "files"):
        entries[section] = meta.get(section) if isinstance(meta, dict) else None
        if not isinstance(entries[section], dict):
            raise ValueError(f"{source}: meta.yaml has no {section} mapping")
        for key, value in entries[section].items():
            if not in_folder(folder, value):
                raise ValueError(
                    f"{source}: meta.yaml's {section}.{key}={value!r} is not a file of the zip "
                    "(by its path relative to the zip's root); pack the model again"
                )
    return entries


def check_config_paths(folder: Path, config: str, source: Path) -> None:
    """Every file the config ``folder/config`` opens at build time (``CONFIG_FILE_KEYS``) must be
    named by its path relative to the root and lie in ``folder``: those are the paths
    espnet_model_zoo rewrites to the snapshot's."""
    values = yaml.safe_load((folder / config).read_text(encoding="utf-8"))
    for keys in CONFIG_FILE_KEYS:
        value = values
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and not in_folder(folder, value):
            raise ValueError(
                f"{source}: {config} sets {'.'.join(keys)}={value!r}, which is not a file of the "
                "zip by its path relative to the zip's root, so the Hub model would look for it on "
                "the machine that loads it; pack the model with espnet_ils.bin.pack_model, which "
                "stores the SSL model and names it so"
            )


def in_folder(folder: Path, path: str) -> bool:
    """Whether ``path`` is a relative POSIX path, inside ``folder``, of a file there."""
    relative = PurePosixPath(path)
    return (
        not relative.is_absolute() and ".." not in relative.parts and (folder / relative).is_file()
    )


def front_matter(card: CardInfo, tags: List[str], extra: Dict[str, str]) -> List[str]:
    """The card's YAML front matter (the Hub reads tags, language, datasets and licence here)."""
    fields = dict(
        tags=tags, language=card.language, datasets=list(card.datasets), license=card.license
    )
    return ["---", yaml.safe_dump({**fields, **extra}, sort_keys=False).rstrip(), "---"]


def results_section(card: CardInfo, note: str = "") -> List[str]:
    """Each results file's markdown as it is, as ESPnet's card shows its RESULTS.md."""
    lines = ["## Results", ""] + ([note, ""] if note else [])
    for path in card.results:
        lines += [Path(path).read_text(encoding="utf-8").rstrip(), ""]
    if not card.results:
        lines += ["No results were given when this model was shared.", ""]
    return lines


def citation_section() -> List[str]:
    return ["## Citations", "", "```bibtex", CITATIONS, "```"]


def espnet_card(folder: Path, meta: Dict[str, Dict[str, str]], card: CardInfo) -> str:
    """README.md of the ESPnet model in ``folder``: front matter, usage, results, configs (every
    ``config.yaml`` of the folder), licence and citations."""
    config = meta["yaml_files"]["asr_train_config"]
    configs = sorted(str(path.relative_to(folder)) for path in folder.rglob("config.yaml"))
    lines = front_matter(card, ["espnet", "audio", "automatic-speech-recognition"], {})
    lines += [
        "",
        "## ESPnet2 ASR model: CTC on an ILS-SSL encoder",
        "",
        f"### `{card.repo}`",
        "",
        "A CTC model fine-tuned on an encoder pretrained with ILS-SSL (HuBERT-style masked "
        "prediction with the loss on intermediate layers as well), trained with the "
        f"`{card.recipe}` recipe of espnet-ils, a plugin package for ESPnet 202511.",
        "",
        "### How to use",
        "",
        "The model's classes come from espnet-ils: install it beside `espnet==202511` and "
        "`espnet_model_zoo`, and import it before ESPnet builds the model. Audio is 16 kHz mono.",
        "",
        "```python",
        "import soundfile",
        "",
        "import espnet_ils  # registers the ILS-SSL classes in ESPnet's tasks",
        "from espnet2.bin.asr_inference import Speech2Text",
        "",
        "speech2text = Speech2Text.from_pretrained(",
        f'    "{card.repo}", ctc_weight=1.0, lm_weight=0.0, beam_size=1',
        ")",
        'speech, rate = soundfile.read("speech.flac")',
        "text, tokens, token_ids, hypothesis = speech2text(speech)[0]",
        "```",
        "",
        f"`meta.yaml` names the ASR config (`{config}`) and weights "
        f"(`{meta['files'].get('asr_model_file', '')}`); the front end's SSL model, which the ASR "
        "weights also hold, lies beside its own config.",
        "",
    ]
    lines += results_section(card)
    lines += ["## Configs", ""]
    for name in configs:
        text = (folder / name).read_text(encoding="utf-8").rstrip()
        lines += [
            f"<details><summary>{name}</summary>",
            "",
            "```yaml",
            text,
            "```",
            "",
            "</details>",
            "",
        ]
    lines += ["## License", "", f"The model's files are shared under `{card.license}`.", ""]
    lines += citation_section()
    return "\n".join(lines) + "\n"


def transformers_repo(repo: str) -> str:
    """The repository of the transformers export of the model shared as ``repo``."""
    return f"{repo}-transformers"


def write_transformers_card(folder: Path, card: CardInfo, espnet_repo: str) -> Path:
    """Write the model card (``README.md``) of a transformers export of the model shared as
    ``espnet_repo``, into the export's folder.

    Args:
        folder: What ``espnet_ils.bin.export_transformers`` wrote for the fine-tuned model
            (``config.json``, the weights, the processor's files).
        card: The export's repository (``card.repo``: :func:`transformers_repo` of
            ``espnet_repo``) and what its card says beyond the files.
        espnet_repo: The repository of the ESPnet model it was exported from.

    Returns:
        The card's path.

    Raises:
        ValueError: ``folder`` holds no ``config.json``.
    """
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder} holds no config.json: not a transformers export; write it with "
            "python -m espnet_ils.bin.export_transformers"
        )
    lines = front_matter(
        card,
        ["audio", "automatic-speech-recognition", "wavlm", "ils-ssl"],
        {"library_name": "transformers", "pipeline_tag": "automatic-speech-recognition"},
    )
    lines += [
        "",
        "## ILS-SSL CTC model for transformers",
        "",
        f"### `{card.repo}`",
        "",
        f"The ESPnet model [`{espnet_repo}`](https://huggingface.co/{espnet_repo}) exported to "
        "transformers' WavLM classes: ILS-SSL's encoder is WavLM's with the gate of the relative "
        f"position bias fixed at 1. It was trained with the `{card.recipe}` recipe of espnet-ils.",
        "",
        "### How to use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'asr = pipeline("automatic-speech-recognition", model="{card.repo}")',
        'print(asr("speech.flac")["text"])  # 16 kHz mono',
        "```",
        "",
    ]
    lines += results_section(card, f"Measured in the recipe with the ESPnet model `{espnet_repo}`.")
    lines += ["## License", "", f"The model's files are shared under `{card.license}`.", ""]
    lines += citation_section()
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("wrote the model card of %s: %s", card.repo, path)
    return path
