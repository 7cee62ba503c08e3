"""Real emotion-dataset readers: DFEW, MAFW, RAVDESS and CREMA-D (``migr_rt.training.data``).

Each reader indexes its dataset from annotations and file names at
construction (no decoding), then decodes lazily into
:class:`~migr_rt.media.Clip` records with canonical labels. Annotation and
media problems are typed errors (``on_error="raise"``) or counted skips
(``on_error="skip"``, the default), see :mod:`.reader`. Open one by spec with
:func:`open_dataset`, e.g. ``open_dataset("dfew:/data/DFEW?fold=2&split=test")``.
"""

from migr_rt.training.data.cremad import CREMAD_EMOTIONS, CREMADReader
from migr_rt.training.data.dfew import DFEW_CODE_TO_LABEL, DFEWReader
from migr_rt.training.data.errors import (
    AnnotationError,
    DatasetError,
    DatasetNotFoundError,
    DuplicateEntryError,
    MalformedNameError,
    MissingMediaError,
    UnknownLabelError,
)
from migr_rt.training.data.mafw import MAFW_NAME_TO_LABEL, MAFWReader
from migr_rt.training.data.ravdess import RAVDESS_EMOTIONS, RAVDESSReader
from migr_rt.training.data.reader import DatasetReader
from migr_rt.training.data.records import Entry, SkipLog
from migr_rt.training.data.registry import READERS, canonical_name, detect_dataset, labels_for, open_dataset, parse_spec

__all__ = [
    "DatasetReader",
    "DFEWReader",
    "MAFWReader",
    "RAVDESSReader",
    "CREMADReader",
    "Entry",
    "SkipLog",
    "DatasetError",
    "DatasetNotFoundError",
    "AnnotationError",
    "MalformedNameError",
    "UnknownLabelError",
    "DuplicateEntryError",
    "MissingMediaError",
    "DFEW_CODE_TO_LABEL",
    "MAFW_NAME_TO_LABEL",
    "RAVDESS_EMOTIONS",
    "CREMAD_EMOTIONS",
    "READERS",
    "open_dataset",
    "parse_spec",
    "detect_dataset",
    "canonical_name",
    "labels_for",
]
