"""Build the pipeline's configs once, on the CPU, before any work starts.

A config that cannot build (an unknown key, ``layers: [13]`` for a 4-block encoder, intermediate
CTC in pretraining, a fine-tuning config that does not fit the SSL model) would otherwise pass the
data and k-means stages and fail hours later at the training stage. Here each config is parsed by
its task's parser and built by its task (``ILSSSLTask``, ``ILSASRTask``: every build-time check of
``espnet_ils.train.tasks`` runs), and a config of the other task is named as such. When stage 12
will export the fine-tuned models to transformers, the built ASR model also goes through the
exporter's structural check (``espnet_ils.export.wavlm_source.export_source``): a model
WavLM cannot express stops the run before stage 1 rather than after its training.
"""

import argparse
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Type

import torch
import yaml
from espnet2.tasks.abs_task import AbsTask
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet_ils.data.labels import UNK, cluster_token_list
from espnet_ils.export.wavlm_source import export_source, require_package
from espnet_ils.train.tasks import ILSASRTask, ILSSSLTask

TASKS = {"pretraining (SSL task)": ILSSSLTask, "fine-tuning (ASR task)": ILSASRTask}
# A letter token list of the shape stage 8 writes; only its size matters to the model.
LETTER_TOKENS = ["<blank>", UNK, *"ETAOINSHRDLUCMFWYGPBVKXJQZ'", "<space>", "<sos/eos>"]


class ConfigError(ValueError):
    """A config that cannot be used; the message names the option and the config file."""


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _raise(message: str) -> None:
    raise argparse.ArgumentError(None, message)


def parse(task: Type[AbsTask], config: Path, *cmd: str) -> argparse.Namespace:
    """``task``'s arguments from ``config``; ESPnet's parse errors raised, not exited on."""
    parser = task.get_parser()
    parser.error = _raise  # ESPnet's parser exits with its whole usage on an unknown key
    return parser.parse_args(["--config", str(config), *cmd])


def check_task(option: str, config: Path, expected: str) -> None:
    """Stop when ``config`` does not parse as ``expected``; name the task it is for, if any.

    A fine-tuning config can parse as a pretraining one (the SSL parser knows its keys and checks
    class names only when building), so a pretraining config must also name its ``loss`` list.
    """
    try:
        parse(TASKS[expected], config)
        if TASKS[expected] is not ILSSSLTask or "loss" in yaml.safe_load(config.read_text()):
            return
        reason = "it has no 'loss' list, which every pretraining config names"
    except argparse.ArgumentError as error:
        reason = str(error)
    for other, task in TASKS.items():
        if other == expected:
            continue
        try:
            parse(task, config)
        except argparse.ArgumentError:
            continue
        raise ConfigError(
            f"{option} {config} is a {other} config, not a {expected} config ({reason})"
        )
    raise ConfigError(f"{option} {config}: {reason}")


def _build(task: Type[AbsTask], args: argparse.Namespace, failure: str) -> torch.nn.Module:
    """``task.build_model(args)``; whatever the build raises comes from the configs: ``failure``."""
    try:
        return task.build_model(args)
    except Exception as error:
        raise ConfigError(f"{failure}: {_describe(error)}") from error


def build_ssl(
    option: str, config: Path, num_classes: int, cluster_option: str
) -> Tuple[torch.nn.Module, argparse.Namespace]:
    """Build a pretraining config with the token list the labels of ``num_classes`` will have (the
    task takes the loss's cluster count from it, and refuses a config that states another)."""
    check_task(option, config, "pretraining (SSL task)")
    args = parse(ILSSSLTask, config)
    args.token_list = cluster_token_list(num_classes)
    built = (
        f"{option} {config} does not build with the token list of {cluster_option} {num_classes}"
    )
    return _build(ILSSSLTask, args, built), args


def build_asr(
    option: str, config: Path, ssl_model: torch.nn.Module, ssl_args: argparse.Namespace
) -> Tuple[torch.nn.Module, argparse.Namespace]:
    """Build a fine-tuning config on ``ssl_model`` (saved as stage 6 saves it, in a temporary dir)."""
    check_task(option, config, "fine-tuning (ASR task)")
    with tempfile.TemporaryDirectory(prefix="ils_config_check_") as tmp:
        (Path(tmp) / "config.yaml").write_text(yaml_no_alias_safe_dump(vars(ssl_args)))
        torch.save(ssl_model.state_dict(), Path(tmp) / "model.pth")
        args = parse(
            ILSASRTask,
            config,
            *("--token_list", str(Path(tmp) / "tokens.txt"), "--token_type", "char"),  # stage 8's
            *("--frontend_conf", f"frontend_conf.path_or_url={Path(tmp) / 'model.pth'}"),
        )
        args.token_list = list(LETTER_TOKENS)
        built = f"{option} {config} does not build on the model of the pretraining config"
        return _build(ILSASRTask, args, built), args


def check_transformers_export(
    option: str, config: Path, model: torch.nn.Module, args: argparse.Namespace
) -> None:
    """Stop when stage 12 could not export the fine-tuned model built from ``config`` to
    transformers' ``WavLMForCTC``, or transformers is not installed.

    Raises:
        ConfigError: Naming the part WavLM cannot express (a log-mel front end, an E-Branchformer
            or Conformer encoder, ...) and ``--hf_transformers false``, which shares the ESPnet
            model only.
    """
    why = None
    try:
        require_package("transformers")
    except ValueError as error:
        why = str(error)
    else:
        try:
            refusal = export_source(model, args.token_type).ctc_refusal
        except ValueError as error:  # the parts WavLM cannot express, named by the exporter
            refusal = str(error)
        if refusal is not None:
            why = f"the model does not fit WavLMForCTC: {refusal}"
    if why is not None:
        raise ConfigError(
            f"{option} {config}: stage 12 exports each run's CTC model to transformers "
            f"(--hf_repo with --hf_transformers true), but {why}. Share the ESPnet model "
            "only with --hf_transformers false"
        )


def check_pipeline_configs(
    it1_config: Optional[Path],
    it1_n_clusters: int,
    it2_config: Path,
    it2_n_clusters: int,
    asr_config: Path,
    transformers_export: bool = False,
) -> None:
    """Build the iteration-1, iteration-2 and fine-tuning configs as the recipe will use them.

    Args:
        it1_config: Iteration 1's pretraining config; None for a run without iteration 1 (its
            targets come from another model, ``ils.sh --label_model``).
        it1_n_clusters: Its k-means size (unused without ``it1_config``).
        it2_config: Iteration 2's pretraining config.
        it2_n_clusters: Its k-means size.
        asr_config: The fine-tuning config, built on the iteration-2 model.
        transformers_export: Stage 12 will export the fine-tuned models to transformers
            (``ils.sh --hf_repo`` with ``--hf_transformers true``): check that it can.

    Raises:
        ConfigError: The first config that cannot be used, named by its recipe option.
    """
    if it1_config is not None:
        build_ssl("--it1_config", it1_config, it1_n_clusters, "--it1_n_clusters")
    it2_model, it2_args = build_ssl("--it2_config", it2_config, it2_n_clusters, "--it2_n_clusters")
    asr_model, asr_args = build_asr("--asr_config", asr_config, it2_model, it2_args)
    if transformers_export:
        check_transformers_export("--asr_config", asr_config, asr_model, asr_args)
