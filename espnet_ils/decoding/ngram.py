"""Word n-gram language models in ARPA format, estimated and evaluated with IRSTLM.

The estimator is IRSTLM's (Debian package ``irstlm``, installed by
``egs2/librispeech_ils/ssl1/local/install_lm_tools.sh``): ``build-lm.sh`` counts the n-grams and
smooths them into an intermediate ARPA, ``compile-lm --text=yes`` writes the ARPA that KenLM (inside
Flashlight's decoder) loads, ``compile-lm --eval`` reports perplexity and OOV rate. Nothing is
estimated here; this module prepares the text, runs the tools and checks what they wrote.

Text conventions: one sentence per line, words separated by spaces, already normalised like the
transcripts the decoder produces (LibriSpeech: upper case, apostrophes kept). Sentence marks
``<s>``/``</s>`` are added here. The LM's own symbols (``<s>``, ``</s>``, ``<unk>``) are lower case.
"""

import gzip
import logging
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

from espnet_ils.data.kaldi_files import write_text_atomic

logger = logging.getLogger(__name__)

LM_SYMBOLS = ("<s>", "</s>", "<unk>")  # words of an ARPA file that are not spoken words
SMOOTHINGS = ("witten-bell", "improved-kneser-ney", "kneser-ney")  # build-lm.sh -s values
IRSTLM_ROOT = "/usr/lib/irstlm"  # Debian's location; the IRSTLM environment variable overrides it
KENLM_BINARY_MAGIC = b"mmap lm http://kheafield.com/code"  # first bytes of a KenLM binary model
INSTALL_HINT = "install IRSTLM with egs2/librispeech_ils/ssl1/local/install_lm_tools.sh"
_NGRAM_COUNT = re.compile(r"^ngram\s+(\d+)\s*=\s*(\d+)$")
_EVAL_LINE = re.compile(r"%% Nw=(\d+) PP=([\d.]+) PPwp=([\d.]+) Nbo=(\d+) Noov=(\d+) OOV=([\d.]+)%")


def irstlm_tool(name: str) -> Path:
    """Path of the IRSTLM program ``name`` (``build-lm.sh``, ``compile-lm``).

    Raises:
        FileNotFoundError: IRSTLM is not installed where ``$IRSTLM`` (default /usr/lib/irstlm)
            points, with the install command.
    """
    root = Path(os.environ.get("IRSTLM", IRSTLM_ROOT))
    tool = root / "bin" / name
    if not os.access(tool, os.X_OK):
        raise FileNotFoundError(f"{tool}: no IRSTLM program {name!r} there; {INSTALL_HINT}")
    return tool


def _open_text(path: Path):
    """Open a text file, gzip-compressed when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def arpa_counts(path: Union[str, Path]) -> Dict[int, int]:
    """Check the header of an ARPA file (plain or ``.gz``) and return its n-gram counts.

    Reads only the header: the first non-empty line must be ``\\data\\``, followed by one
    ``ngram N=count`` line per order ``N = 1, 2, ...`` with positive counts, then ``\\1-grams:``.
    The body is checked when KenLM loads the file.

    Args:
        path: The ARPA file.

    Returns:
        ``{order: number of n-grams}``, e.g. ``{1: 200003, 2: ..., 3: ..., 4: ...}``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not an ARPA header, naming the file, the line and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ARPA file")
    counts: Dict[int, int] = {}
    try:
        with _open_text(path) as f:
            lines = ((n, line.strip()) for n, line in enumerate(f, start=1) if line.strip())
            number, line = next(lines, (0, "end of file"))
            if line != "\\data\\":
                raise ValueError(
                    f"{path}:{number}: not an ARPA file: first non-empty line is {line[:40]!r}, "
                    "expected '\\data\\'"
                )
            for number, line in lines:
                match = _NGRAM_COUNT.match(line)
                if match is None:
                    break
                order, count = int(match.group(1)), int(match.group(2))
                if order != len(counts) + 1 or count == 0:
                    raise ValueError(
                        f"{path}:{number}: ARPA header line {line!r}: expected a positive count "
                        f"for order {len(counts) + 1}"
                    )
                counts[order] = count
            else:
                line = "end of file"
    except (UnicodeDecodeError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable ARPA text file: {error}") from error
    if not counts or line != "\\1-grams:":
        raise ValueError(
            f"{path}:{number}: ARPA header has {len(counts)} 'ngram N=count' lines and is "
            f"followed by {line[:40]!r}; expected at least one, then '\\1-grams:'"
        )
    return counts


def check_lm_file(path: Union[str, Path]) -> None:
    """Check that ``path`` is a KenLM binary model or an ARPA file with a sound header.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Neither, naming the file (see :func:`arpa_counts`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such language model file")
    with path.open("rb") as f:
        if f.read(len(KENLM_BINARY_MAGIC)) == KENLM_BINARY_MAGIC:
            return
    arpa_counts(path)


def arpa_words(path: Union[str, Path]) -> List[str]:
    """The spoken words of an ARPA file: its 1-grams without ``<s>``, ``</s>``, ``<unk>``, sorted.

    Raises:
        ValueError: A bad header, or a 1-gram section whose size differs from the header's count.
    """
    path = Path(path)
    expected = arpa_counts(path)[1]
    words, unigrams, section = [], 0, False
    with _open_text(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                if section:
                    break
                section = line == "\\1-grams:"
                continue
            if section and line:
                fields = line.split()
                if len(fields) < 2:
                    raise ValueError(f"{path}: bad 1-gram line {line!r}")
                unigrams += 1
                if fields[1] not in LM_SYMBOLS:
                    words.append(fields[1])
    if unigrams != expected:
        raise ValueError(f"{path}: {unigrams} 1-grams listed, the header says {expected}")
    return sorted(words)


def _write_sentences(texts: Sequence[Path], path: Path, keyed: bool) -> int:
    """Write ``<s> w1 w2 ... </s>`` per non-empty line of ``texts``; returns the number written."""
    written = 0
    with path.open("w", encoding="utf-8") as out:
        for text in texts:
            with _open_text(text) as f:
                for line in f:
                    words = line.split()[1:] if keyed else line.split()
                    if words:
                        out.write("<s> " + " ".join(words) + " </s>\n")
                        written += 1
    return written


def _run(command: List[str], what: str) -> None:
    """Run an IRSTLM command; on failure raise with its output (the tools log to stdout)."""
    logger.info("%s: %s", what, " ".join(command))
    env = dict(os.environ, IRSTLM=str(irstlm_tool("compile-lm").parent.parent))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {done.returncode}): {' '.join(command)}\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def build_arpa(
    texts: Iterable[Union[str, Path]],
    arpa: Union[str, Path],
    order: int = 4,
    smoothing: str = "improved-kneser-ney",
    keyed: bool = False,
) -> Dict[int, int]:
    """Estimate a word n-gram with IRSTLM and write it as ARPA (atomically).

    Args:
        texts: Training text files, one sentence per line; with ``keyed`` the first field of
            each line is an utterance id (Kaldi ``text``) and is dropped.
        arpa: Output ARPA file (plain text).
        order: n-gram order, 2..6 (the paper's LM is a 4-gram).
        smoothing: ``improved-kneser-ney`` (IRSTLM's improved shift-beta, modified Kneser-Ney's
            counterpart), ``kneser-ney`` (shift-beta) or ``witten-bell``. All three estimate
            corpora of a few sentences.
        keyed: Whether lines start with an utterance id.

    Returns:
        ``{order: number of n-grams}`` of the written ARPA.

    Raises:
        ValueError: Bad order or smoothing; empty training text; IRSTLM wrote no valid ARPA.
        FileNotFoundError: A text file or IRSTLM is missing.
        RuntimeError: An IRSTLM program failed (with its output).
    """
    if not 2 <= order <= 6:
        raise ValueError(f"order={order}: expected 2..6 (e.g. 4 for the paper's 4-gram)")
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"smoothing={smoothing!r}: expected one of {SMOOTHINGS}")
    texts = [Path(t) for t in texts]
    for text in texts:
        if not text.is_file():
            raise FileNotFoundError(f"{text}: no such LM training text")
    arpa = Path(arpa)
    arpa.parent.mkdir(parents=True, exist_ok=True)
    build_lm, compile_lm = irstlm_tool("build-lm.sh"), irstlm_tool("compile-lm")
    with tempfile.TemporaryDirectory(dir=arpa.parent, prefix=f".{arpa.name}.") as tmp:
        sentences = Path(tmp) / "sentences.txt"
        if _write_sentences(texts, sentences, keyed) == 0:
            raise ValueError(f"{[str(t) for t in texts]}: no words to train an LM on")
        iarpa = Path(tmp) / "lm.iarpa.gz"
        # -k 1: one dictionary part (the split trades memory for time on corpora of 10^8 words).
        _run(
            [str(build_lm), "-i", str(sentences), "-n", str(order), "-o", str(iarpa),
             "-k", "1", "-s", smoothing, "-t", str(Path(tmp) / "stat")],
            "IRSTLM build-lm.sh",
        )  # fmt: skip
        if not iarpa.is_file():
            raise RuntimeError(f"IRSTLM build-lm.sh wrote no {iarpa} (order {order}, {smoothing})")
        tmp_arpa = Path(tmp) / "lm.arpa"
        _run([str(compile_lm), "--text=yes", str(iarpa), str(tmp_arpa)], "IRSTLM compile-lm")
        counts = arpa_counts(tmp_arpa)
        if len(counts) != order:
            raise ValueError(f"IRSTLM wrote a {len(counts)}-gram to {tmp_arpa}; asked for {order}")
        os.replace(tmp_arpa, arpa)
    logger.info("wrote %s: %s n-grams per order", arpa, counts)
    return counts


def write_word_list(arpa: Union[str, Path], path: Union[str, Path]) -> List[str]:
    """Write the spoken words of ``arpa`` (one per line, sorted) for the lexicon; returns them."""
    words = arpa_words(arpa)
    write_text_atomic(Path(path), words)
    return words


def ngram_perplexity(
    arpa: Union[str, Path], text: Union[str, Path], keyed: bool = False
) -> Tuple[float, float]:
    """Perplexity and OOV rate of ``text`` under ``arpa``, by IRSTLM's ``compile-lm --eval``.

    Every sentence is scored from ``<s>`` and ends with ``</s>`` (counted as a word, as SRILM and
    KenLM do). OOV words are scored as ``<unk>`` plus IRSTLM's OOV penalty for a dictionary upper
    bound of 10^7 words (its default), so the perplexity is comparable between LMs with different
    vocabularies.

    Args:
        arpa: The language model (ARPA).
        text: Evaluation text, one sentence per line (``keyed``: Kaldi ``text`` with ids).
        keyed: Whether lines start with an utterance id.

    Returns:
        ``(perplexity, oov_rate)``; the OOV rate in percent of the scored words (``</s>`` included).

    Raises:
        FileNotFoundError: ``arpa``, ``text`` or IRSTLM is missing.
        ValueError: ``text`` has no words, or compile-lm printed no perplexity line.
    """
    arpa, text = Path(arpa), Path(text)
    arpa_counts(arpa)
    if not text.is_file():
        raise FileNotFoundError(f"{text}: no such evaluation text")
    compile_lm = irstlm_tool("compile-lm")
    with tempfile.TemporaryDirectory() as tmp:
        sentences = Path(tmp) / "sentences.txt"
        if _write_sentences([text], sentences, keyed) == 0:
            raise ValueError(f"{text}: no words to evaluate")
        done = subprocess.run(
            [str(compile_lm), str(arpa), f"--eval={sentences}"], capture_output=True, text=True
        )
    match = _EVAL_LINE.search(done.stdout + done.stderr)
    if done.returncode != 0 or match is None:
        raise ValueError(
            f"compile-lm --eval of {text} with {arpa} gave no perplexity (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return float(match.group(2)), float(match.group(6))
