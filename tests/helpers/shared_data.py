"""The test data kept outside the repository, in ``../shared/data`` beside it: converter parity
fixtures in ``ils_reference/``, LibriSpeech files in ``librispeech_sample/``.

Tests that need it skip when it is absent, with a reason that names the missing directory under
``SHARED_DATA`` (conftest.py's closing line lists them by that name).
"""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

# The LibriSpeech sample (14 utterances, 79 s, speakers 1089, 1988, 2412, 3752).
LIBRISPEECH_SAMPLE = SHARED_DATA / "librispeech_sample"
needs_sample = pytest.mark.skipif(
    not LIBRISPEECH_SAMPLE.is_dir(), reason=f"{LIBRISPEECH_SAMPLE} (shared test data) is absent"
)
