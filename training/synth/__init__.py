"""The bundled synthetic corpus: procedural talking faces with synthetic voices (``migr_rt.training.synth``).

Modules, one job each:

* :mod:`.cues` - the cue vocabulary (phrases, emotion support, intensity words) explanations are judged by;
* :mod:`.params` - bounded expressive parameter vectors and evidence blending;
* :mod:`.face` - the OpenCV face renderer; :mod:`.voice` - the numpy source-filter voice;
* :mod:`.evidence` - per-modality evidence, clip kinds and ground truth;
* :mod:`.describe` - cue statements derived from rendered parameters;
* :mod:`.corpus` - ``SynthConfig`` and ``generate_corpus`` (MP4 files + manifest);
* :mod:`.reader` - ``SynthCorpus``, the corpus read back as ``Clip`` records;
* :mod:`.preview` - contact sheet and spectrogram images decoded from the written files.

Submodules are imported explicitly (``from migr_rt.training.synth.corpus import ...``) so that
importing the package stays cheap.
"""
