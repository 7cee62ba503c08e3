"""Media I/O: the clip record, decoding to fixed rates, atomic encoding."""

from migr_rt.media.clip import Clip
from migr_rt.media.decode import DecodedMedia, decode_media
from migr_rt.media.encode import write_media
from migr_rt.media.errors import CorruptMediaError, MediaError, MediaNotFoundError, MissingStreamError

__all__ = [
    "Clip",
    "DecodedMedia",
    "decode_media",
    "write_media",
    "MediaError",
    "MediaNotFoundError",
    "CorruptMediaError",
    "MissingStreamError",
]
