"""The model whose block outputs give k-means targets, from any of the forms users have it in.

The paper's LARGE recipe clusters block 9 of the released HuBERT BASE; iteration 2 of BASE
clusters block 6 of our own iteration-1 model. :func:`load_label_model` takes such a model in any
of four forms and returns one :class:`~espnet_ils.targets.layer_features.LayerFeatureExtractor` built from
our modules (front end ``ils_cnn`` or ESPnet's, ``feature_projection``, ``ils_transformer``), so
every form runs the same code, padding-invariant and in batches:

* ``espnet``: ESPnet weights (``.pth``) with ``config.yaml`` beside them (or given as
  ``config``), or a directory with ``config.yaml`` and ``model.pth`` or ``valid.loss.best.pth``;
  loaded by ``LayerFeatureExtractor.from_files``.
* ``fairseq``: a fairseq checkpoint ``.pt`` of a ``hubert`` (``hubert_base_ls960.pt``),
  ``ils_hubert`` or ``hubert_ctc`` model; converted in memory by
  ``espnet_ils.converters.unispeech`` (``prepare``, ``build_converted_model``).
* ``torchaudio``: a state dict in torchaudio's ``Wav2Vec2Model`` layout
  (``hubert_fairseq_base_ls960.pth``, what torchaudio's ``HUBERT_BASE`` bundle downloads); built
  with ``torchaudio.models.hubert_base`` / ``hubert_large`` / ``hubert_xlarge`` as its width and
  depth say (:data:`TORCHAUDIO_FACTORIES`), loaded strictly, converted by
  ``build_from_torchaudio``.
* ``huggingface``: a directory with ``config.json`` and PyTorch weights (``model.safetensors`` or
  ``pytorch_model.bin``) of a ``HubertModel`` or ``Wav2Vec2Model`` (a ``*ForCTC`` checkpoint
  loads without its head); loaded offline by ``transformers``, imported by torchaudio's
  ``import_huggingface_model``, converted by ``build_from_torchaudio``.

What every form is checked for, with errors that name the model's file:

* 16 kHz audio: ESPnet ``frontend_conf.fs``, fairseq ``cfg['task']['sample_rate']``, the
  ``sampling_rate`` of a Hugging Face ``preprocessor_config.json`` (when there is one; the model's
  ``config.json`` has no rate). torchaudio state dicts carry no rate; all of torchaudio's HuBERT
  models are 16 kHz.
* The frame grid the label pipeline assumes (``espnet_ils.data.audio``): frame t covers samples
  ``[320 t, 320 t + 400)``, computed from the front end's conv kernels and strides (or its STFT).
* Post-LN encoders only for torchaudio and Hugging Face models: ``build_from_torchaudio`` refuses
  pre-LN ones (HuBERT LARGE), whose encoder LayerNorm after the last block has no place in our
  pre-LN encoder. The fairseq form takes pre-LN HuBERT (``hubert_large_ll60k.pt``).
* Layers: ``check_layers`` names the model's file when a layer is beyond the depth.

Waveform normalisation follows each form's own definition: fairseq ``cfg['task']['normalize']``,
the Hugging Face feature extractor's ``do_normalize``; torchaudio state dicts of post-LN models
are used without (as torchaudio's ``HUBERT_BASE`` bundle does). For a group-norm front end without
conv bias (BASE) it changes the features only through the GroupNorm's epsilon.

Where each form lies on disk, and what a re-run marker holds for it (the checksum of every file
that defines it, never its path), is :mod:`espnet_ils.targets.label_model_files`.
"""

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torchaudio
from espnet2.asr.frontend.cnn import CNNFrontend
from espnet2.asr.frontend.default import DefaultFrontend
from torch import nn

from espnet_ils.converters.torchaudio_hubert import (
    ENCODER,
    FRONTEND,
    PREENCODER,
    build_from_torchaudio,
)
from espnet_ils.converters.unispeech import (
    build_converted_model,
    default_dictionary,
    is_fairseq_checkpoint,
    prepare,
    read_torch_file,
)
from espnet_ils.data.audio import ENCODER_HOP, SAMPLE_RATE, WINDOW
from espnet_ils.targets.label_model_files import (
    ESPNET,
    ESPNET_CONFIG,
    HF_CONFIG,
    HF_PREPROCESSOR_CONFIG,
    HUGGINGFACE,
    TORCH_FILE,
    locate_label_model,
)
from espnet_ils.targets.layer_features import LayerFeatureExtractor

logger = logging.getLogger(__name__)

#: ``model_type`` of ``config.json`` -> the ``transformers`` class loaded (no head).
HF_MODEL_CLASSES = {"hubert": "HubertModel", "wav2vec2": "Wav2Vec2Model"}
#: ``config.json`` values that torchaudio's import does not read and its modules fix.
HF_FIXED = {
    "hidden_act": "gelu",
    "feat_extract_activation": "gelu",
    "layer_norm_eps": 1e-5,
    "conv_pos_batch_norm": False,
    "feat_proj_layer_norm": True,
}
#: Weights a Hugging Face checkpoint may have that the headless model does not load, and why.
HF_UNUSED = (
    (r"lm_head\.(weight|bias)", "CTC head of a *ForCTC checkpoint; features need the encoder only"),
    (
        r"(quantizer|project_q|project_hid)\..*",
        "wav2vec 2.0 pretraining heads (Wav2Vec2ForPreTraining)",
    ),
    (r"masked_spec_embed", "mask embedding, used in training only"),
)

#: torchaudio's HuBERT models by (width, depth), as its bundles build them.
TORCHAUDIO_FACTORIES: Dict[Tuple[int, int], Callable[..., nn.Module]] = {
    (768, 12): torchaudio.models.hubert_base,
    (1024, 24): torchaudio.models.hubert_large,
    (1280, 48): torchaudio.models.hubert_xlarge,
}
#: Keys every torchaudio ``Wav2Vec2Model`` state dict has.
TORCHAUDIO_KEYS = (
    "feature_extractor.conv_layers.0.conv.weight",
    "encoder.feature_projection.projection.weight",
)
_TORCHAUDIO_BLOCK = re.compile(r"encoder\.transformer\.layers\.(\d+)\.")


@dataclass(frozen=True)
class FrameGrid:
    """Which samples the frames of a front end cover: frame t covers ``[hop t + start, hop t +
    start + window)``, in samples.

    Attributes:
        hop: Samples between frames (320 at 50 Hz).
        start: First sample of frame 0 (0; negative for a centred STFT).
        window: Samples a frame depends on (400, the conv front's receptive field).
    """

    hop: int
    start: int
    window: int

    def describe(self) -> str:
        """e.g. ``[320 t, 320 t + 400) (50 Hz at 16 kHz)``."""
        first = f" + {self.start}" if self.start > 0 else f" - {-self.start}" if self.start else ""
        rate = SAMPLE_RATE / self.hop
        return (
            f"[{self.hop} t{first}, {self.hop} t + {self.start + self.window}) ({rate:g} Hz at "
            f"{SAMPLE_RATE // 1000} kHz)"
        )


#: The grid of the label pipeline (``espnet_ils.data.audio``) and of the models its labels train.
LABEL_GRID = FrameGrid(hop=ENCODER_HOP, start=0, window=WINDOW)


def conv_frame_grid(frontend: CNNFrontend) -> FrameGrid:
    """Frame grid of a conv front end (``ils_cnn``, ESPnet's ``cnn``), from its kernels and
    strides: no padding, so frame 0 starts at sample 0; the hop is the product of the strides."""
    hop, window = 1, 1
    for block in frontend.layers:
        window += (block.kernel_size - 1) * hop  # receptive field, in input samples
        hop *= block.stride
    return FrameGrid(hop=hop, start=0, window=window)


def stft_frame_grid(frontend: DefaultFrontend) -> FrameGrid:
    """Frame grid of ESPnet's STFT front end (``default``): the window of ``win_length`` samples
    sits in the middle of each ``n_fft`` frame; ``center`` shifts frames back by ``n_fft // 2``."""
    stft = frontend.stft
    if stft is None:
        raise ValueError(
            "front end 'default' with apply_stft false takes spectra, not waveforms; a label "
            "model reads 16 kHz audio"
        )
    start = (stft.n_fft - stft.win_length) // 2 - (stft.n_fft // 2 if stft.center else 0)
    return FrameGrid(hop=stft.hop_length, start=start, window=stft.win_length)


#: How the frame grid of each kind of front end is found.
FRAME_GRIDS: Tuple[Tuple[type, Callable[[Any], FrameGrid]], ...] = (
    (CNNFrontend, conv_frame_grid),
    (DefaultFrontend, stft_frame_grid),
)


def frame_grid(frontend: nn.Module) -> FrameGrid:
    """The frame grid of a front end.

    Raises:
        ValueError: A front end whose grid is unknown here (S3PRL, fused, ...).
    """
    for cls, grid in FRAME_GRIDS:
        if isinstance(frontend, cls):
            return grid(frontend)
    raise ValueError(
        f"front end {type(frontend).__name__}: which samples its frames cover is unknown here; "
        "label models need the conv front end (ils_cnn) or ESPnet's STFT front end (default)"
    )


def check_frame_grid(frontend: nn.Module) -> None:
    """Refuse a front end whose frames are not the label pipeline's ``[320 t, 320 t + 400)``.

    Raises:
        ValueError: Naming both grids.
    """
    grid = frame_grid(frontend)
    if grid != LABEL_GRID:
        raise ValueError(
            f"its frame t covers samples {grid.describe()}, a window of {grid.window} samples "
            f"every {grid.hop}; the label pipeline needs {LABEL_GRID.describe()}, the frames of "
            "the wav2vec 2.0 / HuBERT conv front end that the labels train, or labels and frames "
            "would not line up"
        )


def _check_sample_rate(rate: Any, where: str) -> None:
    if rate != SAMPLE_RATE:
        raise ValueError(
            f"{where} = {rate}: a label model must take {SAMPLE_RATE} Hz audio, the rate of the "
            "corpus and of the label pipeline; use a 16 kHz model"
        )


def _listing(items: List[str]) -> str:
    return "\n  " + "\n  ".join(items)


def _espnet_extractor(
    weights: Path, config: Path, device: str
) -> Tuple[LayerFeatureExtractor, str]:
    extractor = LayerFeatureExtractor.from_files(weights, config, device)
    _check_sample_rate(extractor.sample_rate, f"{config}: frontend_conf.fs")
    return extractor, f"ESPnet model, config {config}"


def _fairseq_extractor(
    path: Path, checkpoint: Dict[str, Any], device: str
) -> Tuple[LayerFeatureExtractor, str]:
    task_cfg = checkpoint["cfg"]["task"]
    _check_sample_rate(task_cfg.get("sample_rate"), "cfg['task']['sample_rate']")
    task, config, tokens, mapped = prepare(checkpoint, default_dictionary(path, checkpoint))
    model, _ = build_converted_model(task, config, tokens, mapped)
    extractor = LayerFeatureExtractor(
        model.frontend,
        model.preencoder,
        model.encoder,
        model.normalize,
        SAMPLE_RATE,
        device,
        source=path,
    )
    return extractor, f"fairseq {checkpoint['cfg']['model']['_name']} checkpoint"


def _extractor_from_torchaudio(
    model: nn.Module, normalize_audio: bool, source: Path, device: str
) -> LayerFeatureExtractor:
    if model.encoder.transformer.layers[0].layer_norm_first:
        raise ValueError(
            "a pre-LN model (torchaudio encoder_layer_norm_first=True, e.g. HuBERT LARGE): "
            "build_from_torchaudio refuses it, since torchaudio applies its encoder LayerNorm after "
            "the last block and our pre-LN encoder has none; load the model's fairseq checkpoint "
            "instead (e.g. hubert_large_ll60k.pt), which converts with that LayerNorm kept for "
            "its prediction head"
        )
    modules = build_from_torchaudio(model)
    modules[FRONTEND].normalize_audio = normalize_audio
    return LayerFeatureExtractor(
        modules[FRONTEND],
        modules[PREENCODER],
        modules[ENCODER],
        None,
        SAMPLE_RATE,
        device,
        source=source,
    )


def torchaudio_factory(state_dict: Mapping[str, torch.Tensor]) -> Callable[..., nn.Module]:
    """The torchaudio model function (:data:`TORCHAUDIO_FACTORIES`) that fits a state dict.

    A state dict holds neither strides nor head counts, so only torchaudio's own HuBERT sizes,
    told apart by width (``encoder.feature_projection.projection.weight``) and depth, load.

    Raises:
        ValueError: No torchaudio HuBERT model has that width and depth.
    """
    width = state_dict[TORCHAUDIO_KEYS[1]].shape[0]
    blocks = {match.group(1) for match in map(_TORCHAUDIO_BLOCK.match, state_dict) if match}
    factory = TORCHAUDIO_FACTORIES.get((width, len(blocks)))
    if factory is None:
        sizes = ", ".join(
            f"{getattr(f, '__name__', f)}: width {w}, {d} blocks"
            for (w, d), f in TORCHAUDIO_FACTORIES.items()
        )
        raise ValueError(
            f"a torchaudio state dict of width {width} with {len(blocks)} blocks, which is none "
            f"of torchaudio's HuBERT models ({sizes}); its strides and heads are not in the file"
        )
    return factory


def _torchaudio_extractor(
    path: Path, state_dict: Dict[str, torch.Tensor], device: str
) -> Tuple[LayerFeatureExtractor, str]:
    factory = torchaudio_factory(state_dict)
    name = getattr(factory, "__name__", repr(factory))
    aux = state_dict.get("aux.weight")  # CTC head of a fine-tuned model
    model = factory(aux_num_out=None if aux is None else aux.shape[0])
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ValueError(f"the state dict does not fit torchaudio's {name}(): {error}") from error
    return _extractor_from_torchaudio(model, False, path, device), f"torchaudio {name}"


def _huggingface_extractor(directory: Path, device: str) -> Tuple[LayerFeatureExtractor, str]:
    config = json.loads((directory / HF_CONFIG).read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    if model_type not in HF_MODEL_CLASSES:
        raise ValueError(
            f"{HF_CONFIG}: model_type {model_type!r}; only {sorted(HF_MODEL_CLASSES)} (HuBERT, "
            "wav2vec 2.0) convert into our modules"
        )
    for name, fixed in HF_FIXED.items():
        if config.get(name, fixed) != fixed:
            raise ValueError(
                f"{HF_CONFIG}: {name} = {config[name]!r}; torchaudio's modules, which ours "
                f"reproduce, have {fixed!r}"
            )
    preprocessor_file = directory / HF_PREPROCESSOR_CONFIG
    preprocessor = (
        json.loads(preprocessor_file.read_text(encoding="utf-8"))
        if preprocessor_file.is_file()
        else {}
    )
    _check_sample_rate(
        preprocessor.get("sampling_rate", SAMPLE_RATE), f"{HF_PREPROCESSOR_CONFIG}: sampling_rate"
    )

    import transformers  # 4 s to import: only where a Hugging Face model is loaded
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    model_class = getattr(transformers, HF_MODEL_CLASSES[model_type])
    try:
        model, info = model_class.from_pretrained(
            directory, local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"transformers cannot load it: {error}") from error
    unused = [(re.compile(pattern), reason) for pattern, reason in HF_UNUSED]
    problems = []
    for kind, keys in (("missing", info["missing_keys"]), ("unexpected", info["unexpected_keys"])):
        for key in sorted(keys):
            reason = next((why for pattern, why in unused if pattern.fullmatch(key)), None)
            if reason is not None:
                logger.info("%s: %s weight %s not used: %s", directory, kind, key, reason)
            elif kind == "missing":
                problems.append(f"missing {key} (it would keep its random initial value)")
            else:
                problems.append(f"unexpected {key}")
    problems += [f"shape mismatch {entry}" for entry in info["mismatched_keys"]]
    problems += [str(message) for message in info["error_msgs"]]
    if problems:
        raise ValueError(
            f"the weights do not fit {model_class.__name__} as {HF_CONFIG} describes it "
            f"(known unused weights: {[pattern for pattern, _ in HF_UNUSED]}):"
            f"{_listing(problems)}"
        )
    try:
        imported = import_huggingface_model(model.eval())
    except RuntimeError as error:  # its strict loads: a layout torchaudio does not have
        raise ValueError(f"torchaudio's import_huggingface_model refuses it: {error}") from error
    normalize = bool(preprocessor.get("do_normalize", False))
    extractor = _extractor_from_torchaudio(imported, normalize, directory, device)
    return extractor, f"Hugging Face {model_class.__name__}"


def load_label_model(
    path: Path, config: Optional[Path] = None, device: str = "cpu"
) -> LayerFeatureExtractor:
    """Load a model whose block outputs give k-means targets, in any form (module docstring).

    Args:
        path: ESPnet weights or model directory, fairseq checkpoint, torchaudio state dict, or
            Hugging Face directory; the form is told by :func:`locate_label_model` and, for a
            single PyTorch file, by what it holds.
        config: ESPnet ``config.yaml``; default beside the weights. Only for ESPnet models.
        device: Where to run, e.g. ``"cpu"`` or ``"cuda:0"``.

    Returns:
        The extractor, in eval mode on ``device``: layer k (1-based) is the output of block k
        ``(B, T, D)`` at 50 Hz, frame t covering samples ``[320 t, 320 t + 400)`` of 16 kHz audio.

    Raises:
        ValueError: Naming ``path``: an unknown form; weights that do not fit their config; a
            model not at 16 kHz, with another frame grid, or one our modules cannot reproduce.
    """
    path = Path(path)
    located = locate_label_model(path, config)
    contents = read_torch_file(path, "label model") if located.form == TORCH_FILE else None
    try:
        if located.form == ESPNET:
            extractor, what = _espnet_extractor(*located.files, device)
        elif located.form == HUGGINGFACE:
            extractor, what = _huggingface_extractor(path, device)
        elif is_fairseq_checkpoint(contents):
            extractor, what = _fairseq_extractor(path, contents, device)
        elif isinstance(contents, dict) and all(key in contents for key in TORCHAUDIO_KEYS):
            extractor, what = _torchaudio_extractor(path, contents, device)
        else:
            held = (
                f"a dict with keys {sorted(map(str, contents))[:4]}"
                if isinstance(contents, dict)
                else f"a {type(contents).__name__}"
            )
            raise ValueError(
                f"it holds {held}: neither a fairseq checkpoint (a dict with 'cfg' and 'model') "
                f"nor a torchaudio state dict (keys {list(TORCHAUDIO_KEYS)}), and no "
                f"{ESPNET_CONFIG} lies beside it (ESPnet weights)"
            )
        check_frame_grid(extractor.front[0])
    except ValueError as error:
        raise ValueError(f"label model {path}: {error}") from error
    logger.info("label model %s: %s, %d blocks, on %s", path, what, extractor.num_layers, device)
    return extractor
