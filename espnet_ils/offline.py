"""Keep ESPnet's imports from reaching for the network.

``espnet2.text.phoneme_tokenizer`` (imported by every task) imports ``g2p_en``, whose import tries to
download NLTK data and prints errors on a machine without network. Nothing in ILS-SSL uses it, so
until somebody actually touches ``g2p_en`` we hand ESPnet a placeholder module; the first attribute
access imports the real package, so ``--g2p g2p_en`` still works where it worked before.
"""

import importlib
import sys
import types


class _DeferredModule(types.ModuleType):
    def __getattr__(self, name: str):
        # Tools that scan sys.modules (inspect.getmodule, via torch) probe dunders: not a use.
        if name.startswith("__"):
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        return getattr(real, name)


def defer_g2p_en_import() -> None:
    """Install the placeholder for ``g2p_en`` unless it is already imported. Safe to call twice."""
    if "g2p_en" not in sys.modules:
        sys.modules["g2p_en"] = _DeferredModule("g2p_en")
