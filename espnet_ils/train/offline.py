"""Keep ESPnet's imports from reaching for the network.

``espnet2.text.phoneme_tokenizer`` (imported by every task) runs ``import g2p_en``, and importing
``g2p_en`` looks for NLTK data and tries to download it, printing errors on a machine without
network. ESPnet only uses the module when a ``--g2p g2p_en`` tokenizer is built, and ILS-SSL never
does. So, unless ``g2p_en`` is already imported, we put a placeholder in its place: the import then
does nothing, and the first use of any of its attributes imports the real package, which takes the
placeholder's place, so ``--g2p g2p_en`` still works where it worked before.

The placeholder is made by the import system itself (``importlib.util.module_from_spec`` on the
package's real spec, without running it), so it carries ``__spec__``, ``__file__`` and the other
module attributes the package would have: libraries that ask about an imported module
(transformers' ``is_g2p_en_available`` calls ``importlib.util.find_spec``, which reads
``sys.modules["g2p_en"].__spec__``) get the package's own answers and import nothing.
"""

import importlib
import importlib.util
import sys


def defer_g2p_en_import() -> None:
    """Put the ``g2p_en`` placeholder in ``sys.modules`` unless it is imported. Safe to call twice.

    Nothing is done when ``g2p_en`` is not installed: ESPnet's import then fails as it would
    without this package.
    """
    if "g2p_en" in sys.modules:
        return
    spec = importlib.util.find_spec("g2p_en")  # finds the package; runs none of it
    if spec is None:
        return
    placeholder = importlib.util.module_from_spec(spec)

    def load_real(name: str) -> object:  # the module's __getattr__ (PEP 562): a missing attribute
        if name.startswith("__"):  # tools that scan sys.modules (torch's inspect) probe dunders
            raise AttributeError(name)
        if sys.modules.get("g2p_en") is placeholder:
            del sys.modules["g2p_en"]
        return getattr(importlib.import_module("g2p_en"), name)

    placeholder.__getattr__ = load_real
    sys.modules["g2p_en"] = placeholder
