import sys

import pytest

from espnet_ils.offline import defer_g2p_en_import


@pytest.fixture
def real_g2p_en(tmp_path, monkeypatch):
    """A stand-in for the installed g2p_en (the real one's import reaches for NLTK's downloads)."""
    (tmp_path / "g2p_en").mkdir()
    (tmp_path / "g2p_en" / "__init__.py").write_text("class G2p:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "g2p_en", raising=False)


def test_the_placeholder_imports_nothing_until_used_then_hands_over_to_the_package(real_g2p_en):
    defer_g2p_en_import()
    import g2p_en

    placeholder = sys.modules["g2p_en"]
    assert g2p_en is placeholder and not hasattr(g2p_en, "__file__")  # dunders are not a use
    assert g2p_en.G2p.__module__ == "g2p_en"  # the first use imports the package
    assert sys.modules["g2p_en"] is not placeholder
    assert sys.modules["g2p_en"].G2p is g2p_en.G2p  # later uses through the placeholder agree


def test_an_imported_g2p_en_is_left_alone(real_g2p_en):
    import g2p_en

    defer_g2p_en_import()
    assert sys.modules["g2p_en"] is g2p_en
