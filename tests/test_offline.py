import importlib.util
import subprocess
import sys
import textwrap

import pytest

from espnet_ils.train.offline import defer_g2p_en_import

RUNS = "_stand_in_g2p_en_runs"  # how often the stand-in's code ran, kept on sys


@pytest.fixture
def real_g2p_en(tmp_path, monkeypatch):
    """A stand-in for the installed g2p_en (the real one's import reaches for NLTK's downloads)
    that counts how often its code runs."""
    (tmp_path / "g2p_en").mkdir()
    (tmp_path / "g2p_en" / "__init__.py").write_text(
        f"import sys\nsys.{RUNS} = getattr(sys, '{RUNS}', 0) + 1\nclass G2p:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "g2p_en", raising=False)
    monkeypatch.setattr(sys, RUNS, 0, raising=False)
    return tmp_path / "g2p_en" / "__init__.py"


def test_the_placeholder_imports_nothing_until_used_then_hands_over_to_the_package(real_g2p_en):
    defer_g2p_en_import()
    import g2p_en

    placeholder = sys.modules["g2p_en"]
    assert g2p_en is placeholder and getattr(sys, RUNS) == 0
    assert g2p_en.__file__ == str(real_g2p_en)  # the module attributes are the package's own
    assert g2p_en.G2p.__module__ == "g2p_en"  # the first use imports the package
    assert getattr(sys, RUNS) == 1
    assert sys.modules["g2p_en"] is not placeholder
    assert sys.modules["g2p_en"].G2p is g2p_en.G2p  # later uses through the placeholder agree
    assert getattr(sys, RUNS) == 1


def test_the_import_system_answers_for_the_placeholder_without_running_the_package(real_g2p_en):
    """What transformers' is_g2p_en_available asks (importlib.util.find_spec on a module in
    sys.modules reads its __spec__; a module without one makes find_spec raise ValueError)."""
    defer_g2p_en_import()
    spec = importlib.util.find_spec("g2p_en")
    assert spec is not None and spec.origin == str(real_g2p_en)
    assert getattr(sys, RUNS) == 0


def test_an_imported_g2p_en_is_left_alone(real_g2p_en):
    import g2p_en

    defer_g2p_en_import()
    assert sys.modules["g2p_en"] is g2p_en


# transformers checks its optional packages with find_spec at import time; with the placeholder of
# old (no __spec__) every ESPnet task import after it crashed. In a fresh interpreter, in the order
# a user's script or stage 5's jobs take them.
BESIDE_TRANSFORMERS = textwrap.dedent(
    """
    import sys
    import espnet_ils
    from transformers import AutoProcessor, WavLMModel
    from transformers.utils import is_g2p_en_available
    assert is_g2p_en_available()
    from espnet2.tasks import asr, ssl
    from espnet_ils.targets.layer_features import LayerFeatureExtractor
    assert ssl.encoder_choices.get_class("ils_transformer").__name__ == "ILSTransformerEncoder"
    assert "G2p" not in vars(sys.modules["g2p_en"]), "g2p_en ran, reaching for NLTK data"
    """
)


@pytest.mark.slow
def test_the_plugin_works_beside_transformers_and_stays_offline():
    pytest.importorskip("transformers")
    result = subprocess.run(
        [sys.executable, "-c", BESIDE_TRANSFORMERS], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nltk_data" not in result.stderr + result.stdout
