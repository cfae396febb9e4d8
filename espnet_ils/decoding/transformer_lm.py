"""Decoding CTC log-probs computed once with a letter LM of ESPnet's LM task (a Transformer LM).

Two searches, each scoring a hypothesis as CTC + ``lm_weight`` x LM log-probability +
``penalty`` x letters (the length bonus keeps the LM's per-letter costs from favouring short or
empty output):

- :class:`LMFusionSearch`, shallow fusion as ESPnet decodes a CTC-only model with an LM
  (``espnet2.bin.asr_inference --ctc_weight 1.0 --lm_weight W --penalty P``): ESPnet's batch beam
  search over label sequences, with CTC prefix scores and the LM in every step. Its cost is the
  CTC prefix scorer's loop over every frame for every output letter (frames x letters), about
  3-6 s per 6-s utterance on one CPU thread whatever the beam: a GPU or many jobs' tool. Without
  an LM it is ESPnet's CTC prefix beam search alone (``asr_inference --ctc_weight 1.0`` with no
  ``--lm_file``), the recipe's ``beam`` decode mode on kept log-probs.
- :class:`NbestRescoring`: the N best letter sequences of a lexicon-free CTC beam search
  (Flashlight's, through torchaudio, without an LM) rescored by the LM in one batch per
  utterance, as icefall's and NeMo's LM rescoring do. Hundreds of times faster on a CPU; the LM
  only reorders what the search kept.

Both read the log-probs that ``espnet_ils.bin.dump_ctc_logprobs`` kept, so tuning ``(W, P)`` on a
valid set costs the search alone.
"""

import hashlib
import logging
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import torch
from espnet.nets.batch_beam_search import BatchBeamSearch
from espnet.nets.scorers.ctc import CTCPrefixScorer
from espnet.nets.scorers.length_bonus import LengthBonus
from torchaudio.models.decoder import ctc_decoder

from espnet_ils.decoding.lexicon import BLANK, UNK, WORD_BOUNDARY, ids_to_words
from espnet_ils.decoding.lm_check import config_token_list, first_difference

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

FUSION_BEAM_SIZE = 10  # at most the token list's size - 1 (check_beam_size): 30 for 31 letters
RESCORE_BEAM_SIZE = 50
LM_WEIGHT = 0.5  # ESPnet's LibriSpeech recipes fuse their LMs at 0.4-0.6
PENALTY = 0.0


def load_letter_lm(
    tokens: Sequence[str], lm_train_config: PathLike, lm_file: PathLike
) -> torch.nn.Module:
    """The ``ESPnetLanguageModel`` of an LM experiment, in eval mode, checked against ``tokens``.

    Raises:
        FileNotFoundError: The config or the checkpoint is missing.
        ValueError: The LM's token list differs from ``tokens`` (naming the first difference).
    """
    from espnet2.tasks.lm import LMTask  # ESPnet's tasks are slow to import; only here

    if not Path(lm_file).is_file():
        raise FileNotFoundError(f"{lm_file}: no such LM checkpoint")
    difference = first_difference(list(tokens), config_token_list(lm_train_config))
    if difference:
        raise ValueError(
            f"{lm_train_config}: the LM's token list differs from the ASR model's {difference}; "
            "train the LM with the ASR model's tokens.txt"
        )
    model, _ = LMTask.build_model_from_file(lm_train_config, lm_file, "cpu")
    logger.info("letter LM %s (%s)", lm_file, lm_train_config)
    return model.eval()  # no dropout, as Speech2Text runs it


def check_log_probs(log_probs: torch.Tensor, tokens: Sequence[str]) -> torch.Tensor:
    """``(T, V)`` float32 log-probs, ``V = len(tokens)``.

    Raises:
        ValueError: Another shape (a model fine-tuned with another token list).
    """
    log_probs = torch.as_tensor(log_probs, dtype=torch.float32)
    if log_probs.dim() != 2 or log_probs.size(1) != len(tokens):
        raise ValueError(
            f"CTC log-probs of shape {tuple(log_probs.shape)}: expected (T, {len(tokens)}) "
            "for this token list (was the model fine-tuned with another token list?)"
        )
    return log_probs


def check_beam_size(beam_size: int, num_tokens: int) -> None:
    """Refuse a beam ESPnet's batch beam search cannot use over ``num_tokens`` CTC outputs.

    Its first step keeps the top ``beam_size`` of ``num_tokens`` scores, so a wider beam fails
    inside the search ("selected index k out of range"; e.g. the paper's 50 with 31 letters). At
    exactly ``num_tokens`` the blank, which the CTC prefix scorer scores -1e10, enters the beam and
    float32 rounding cancels that score on the way back: hypotheses with a blank then score about
    0 and win (empty output). So at most ``num_tokens - 1``.

    Raises:
        ValueError: ``beam_size`` outside ``1..num_tokens - 1``, naming both.
    """
    if not 1 <= beam_size <= num_tokens - 1:
        raise ValueError(
            f"beam size {beam_size} for {num_tokens} tokens: ESPnet's beam search takes at most "
            f"{num_tokens - 1} (one hypothesis per token but the blank)"
        )


class CachedCTC(torch.nn.Module):
    """The ``ctc`` module :class:`CTCPrefixScorer` calls, for inputs that are CTC log-probs.

    ``CTCPrefixScorer`` applies ``ctc.log_softmax`` to what it is given; the log-softmax of
    log-probs is the log-probs themselves (their log-sum-exp is 0), so the scores are those of
    the model that wrote them.
    """

    def log_softmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """``(B, T, V)`` log-probs -> the same, renormalised against rounding."""
        return torch.log_softmax(hs_pad, dim=-1)


class LMFusionSearch:
    """ESPnet's batch beam search with CTC prefix scores, an ESPnet LM (or none) and a length bonus.

    Args:
        tokens: The ASR model's token list (``<blank>`` first, ``<sos/eos>`` last).
        lm_train_config: The LM experiment's ``config.yaml``; its token list must be ``tokens``.
            None: no LM, ESPnet's CTC prefix beam search alone (``decode`` takes LM weight 0).
        lm_file: Its checkpoint (``valid.loss.best.pth`` or an average); None with no LM.
        beam_size: Hypotheses kept per output step; at most ``len(tokens) - 1``
            (:func:`check_beam_size`).

    Raises:
        FileNotFoundError, ValueError: See :func:`load_letter_lm`; a beam outside
            ``1..len(tokens) - 1``; one of ``lm_train_config`` and ``lm_file`` without the other.
    """

    BONUS = "penalty"  # the second tuned score: ESPnet's name for the per-token bonus

    def __init__(
        self,
        tokens: Sequence[str],
        lm_train_config: Optional[PathLike] = None,
        lm_file: Optional[PathLike] = None,
        beam_size: int = FUSION_BEAM_SIZE,
    ) -> None:
        self.tokens = list(tokens)
        check_beam_size(beam_size, len(self.tokens))
        if (lm_train_config is None) != (lm_file is None):
            raise ValueError(
                f"lm_train_config={lm_train_config}, lm_file={lm_file}: give both (fusion with "
                "that LM) or neither (no LM)"
            )
        self.lm: Optional[torch.nn.Module] = None
        if lm_train_config is not None:
            self.lm = load_letter_lm(self.tokens, lm_train_config, lm_file).lm
        self.beam_size = beam_size

    def search(self, lm_weight: float, penalty: float) -> BatchBeamSearch:
        """ESPnet's search for one ``(lm_weight, penalty)`` pair (the scorers are shared).

        Raises:
            ValueError: A non-zero ``lm_weight`` without an LM.
        """
        if self.lm is None and lm_weight != 0:
            raise ValueError(
                f"lm_weight={lm_weight} for a search without an LM: expected 0 (or give "
                "lm_train_config and lm_file)"
            )
        eos = len(self.tokens) - 1
        lm = {} if self.lm is None else {"lm": self.lm}
        return BatchBeamSearch(
            scorers={
                "ctc": CTCPrefixScorer(ctc=CachedCTC(), eos=eos),
                **lm,
                "length_bonus": LengthBonus(len(self.tokens)),
            },
            weights={"ctc": 1.0, **{name: lm_weight for name in lm}, "length_bonus": penalty},
            beam_size=self.beam_size,
            vocab_size=len(self.tokens),
            sos=eos,
            eos=eos,
            token_list=self.tokens,
            pre_beam_score_key=None,  # as Speech2Text with ctc_weight 1.0: CTC scores every token
        ).eval()

    def decode(self, log_probs: torch.Tensor, lm_weight: float, penalty: float) -> str:
        """Decode one utterance.

        Args:
            log_probs: ``(T, V)`` CTC log-probs (50 Hz frames), ``V = len(tokens)``.
            lm_weight: Weight of the LM's natural-log probabilities (0 without an LM).
            penalty: Score added per output token (ESPnet's ``--penalty``).

        Returns:
            The words, space-separated (empty when the best hypothesis is empty).

        Raises:
            ValueError: ``log_probs`` is not ``(T, len(tokens))``; a non-zero ``lm_weight``
                without an LM.
        """
        log_probs = check_log_probs(log_probs, self.tokens)
        search = self.search(lm_weight, penalty)
        if log_probs.size(0) == 0:
            return ""
        with torch.no_grad():
            hyps = search(x=log_probs, maxlenratio=0.0, minlenratio=0.0)
        if not hyps:
            return ""
        ids: List[int] = hyps[0].yseq[1:-1].tolist()  # without <sos> and <eos>
        return ids_to_words(ids, self.tokens)


class Candidate(NamedTuple):
    """One of the N best: its token ids (``<space>`` between words), scores in natural log."""

    letters: List[int]
    ctc_score: float
    lm_score: float


class NbestRescoring:
    """Lexicon-free CTC beam search (no LM), its N best rescored with an ESPnet letter LM.

    The search merges paths of the same letters by log-add, so a hypothesis' acoustic score is
    close to its CTC probability; the LM's score is ``log P(letters, <eos>)``.

    Args:
        tokens: The ASR model's token list (``<blank>`` first, ``<sos/eos>`` last).
        lm_train_config: The LM experiment's ``config.yaml``; its token list must be ``tokens``.
        lm_file: Its checkpoint.
        beam_size: Hypotheses the CTC search keeps per frame.
        nbest: Hypotheses rescored (at most ``beam_size``).

    Raises:
        FileNotFoundError, ValueError: See :func:`load_letter_lm`; ``nbest`` outside
            ``1..beam_size``.
    """

    BONUS = "penalty"

    def __init__(
        self,
        tokens: Sequence[str],
        lm_train_config: PathLike,
        lm_file: PathLike,
        beam_size: int,
        nbest: int,
    ) -> None:
        if not 1 <= nbest <= beam_size:
            raise ValueError(f"nbest={nbest}: expected 1..beam_size ({beam_size})")
        self.tokens = list(tokens)
        self.beam_size, self.nbest = beam_size, nbest
        self.lm = load_letter_lm(self.tokens, lm_train_config, lm_file)
        self.search = ctc_decoder(
            lexicon=None,
            tokens=self.tokens,
            nbest=nbest,
            beam_size=beam_size,
            beam_threshold=1e9,  # the beam alone bounds the search: no LM to set a margin by
            log_add=True,
            blank_token=BLANK,
            sil_token=WORD_BOUNDARY,
            unk_word=UNK,
        )
        self._boundary = self.tokens.index(WORD_BOUNDARY)
        # Tuning decodes each utterance once per (lm_weight, penalty) pair: its N best are
        # searched and LM-scored once, keyed by the log-probs' content.
        self._cache: Dict[bytes, List[Candidate]] = {}

    def candidates(self, log_probs: torch.Tensor) -> List[Candidate]:
        """The N best, as the search ranks them, each with its LM log-probability.

        Args:
            log_probs: ``(T, V)`` CTC log-probs, ``V = len(tokens)``.
        """
        log_probs = check_log_probs(log_probs, self.tokens)
        key = hashlib.sha1(log_probs.numpy().tobytes()).digest() + str(log_probs.shape).encode()
        if key not in self._cache:
            self._cache[key] = self._search_and_score(log_probs)
        return self._cache[key]

    def _search_and_score(self, log_probs: torch.Tensor) -> List[Candidate]:
        if log_probs.size(0) == 0:
            return [Candidate([], 0.0, self._lm_log_probs([[]])[0])]
        hyps = self.search(log_probs[None].contiguous())[0]  # (1, T, V) -> its N best
        # Word boundaries at either end are the search's, not letters of the hypothesis.
        sequences = [self._strip_boundaries(hyp.tokens.tolist()) for hyp in hyps]
        lm_scores = self._lm_log_probs(sequences)
        return [Candidate(s, float(h.score), lm) for s, h, lm in zip(sequences, hyps, lm_scores)]

    def _strip_boundaries(self, ids: List[int]) -> List[int]:
        letters: List[int] = []
        for i in ids:
            if i == self._boundary and (not letters or letters[-1] == self._boundary):
                continue
            letters.append(i)
        return letters[:-1] if letters and letters[-1] == self._boundary else letters

    def _lm_log_probs(self, sequences: List[List[int]]) -> List[float]:
        """``log P(sequence, <eos>)`` of each, in one padded batch (ESPnet adds ``<sos>``)."""
        lengths = torch.tensor([len(s) for s in sequences])
        text = torch.zeros(len(sequences), max(1, int(lengths.max())), dtype=torch.long)
        for i, sequence in enumerate(sequences):
            text[i, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        with torch.no_grad():
            nll, _ = self.lm.nll(text, lengths)  # (N, L + 1), zero past each end
        return (-nll.sum(dim=1)).tolist()

    def decode(self, log_probs: torch.Tensor, lm_weight: float, penalty: float) -> str:
        """The best of the N by CTC + ``lm_weight`` x LM + ``penalty`` x letters, as words."""
        best = max(
            self.candidates(log_probs),
            key=lambda c: c.ctc_score + lm_weight * c.lm_score + penalty * len(c.letters),
        )
        return ids_to_words(best.letters, self.tokens)


# ESPnet's beam search logs every utterance's lengths and best hypothesis at INFO.
for _name in ("espnet.nets.beam_search", "espnet.nets.batch_beam_search"):
    logging.getLogger(_name).setLevel(logging.WARNING)
