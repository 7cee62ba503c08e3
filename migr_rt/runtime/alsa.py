"""Point PyAV's bundled ALSA library at the system's ALSA configuration.

PyAV's Linux wheels carry their own ``libasound`` (in ``av.libs/``), built to
read its configuration from a folder of the wheel's build machine
(``/tmp/vendor/share/alsa``). That folder does not exist on the user's machine,
so without help every ALSA device fails to open with an uninformative
``Input/output error`` — ``default``, ``hw:0`` and ``plughw:1,0`` alike.
``ALSA_CONFIG_DIR`` (read by alsa-lib >= 1.2.5) points it at the system's
configuration folder instead, which also pulls in ``/etc/asound.conf`` and
``~/.asoundrc`` (``ALSA_CONFIG_PATH`` alone is not enough: it names the top
file, and the library still looks for the files that one includes in the build
machine's folder). A user who set ``ALSA_CONFIG_DIR`` keeps theirs, and a PyAV
linked against the system's ``libasound`` needs nothing.

ALSA plugins that live in separate shared objects (``pulse``, ``pipewire``,
``jack``) stay out of reach of the bundled library: they are built against the
system's ``libasound``. Left alone, the bundled library would look for them in
``/tmp/vendor/lib/alsa-lib``, a folder any local user can create, so
``ALSA_PLUGIN_DIR`` is pointed at the wheel's own library folder, which holds
none: a ``default`` device routed to PulseAudio or PipeWire then fails to open
instead of loading code from ``/tmp``. Hardware devices (``hw:``, ``plughw:``)
and the built-in plugins (``dsnoop``, ``plug``, ``file``, ``null`` ...) work.

The variables are set in this process's environment, once, when a microphone
spec is parsed (before any capture thread starts): alsa-lib reads them when it
opens its first device.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import av

logger = logging.getLogger(__name__)

#: Where distributions keep alsa.conf (Debian/Ubuntu/Fedora/Arch; Alpine; a source build).
SYSTEM_CONFIG_DIRS = ("/usr/share/alsa", "/usr/local/share/alsa", "/etc/alsa")


class AlsaConfigError(RuntimeError):
    """No ALSA configuration the bundled library could read; the message says what to install or set."""


def bundled_libasound() -> Path | None:
    """PyAV's own copy of libasound, if this PyAV is a wheel that carries one."""
    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    return next(iter(sorted(libs.glob("libasound*.so*"))), None) if libs.is_dir() else None


def alsa_environment(
    environ: Mapping[str, str], bundled: Path | None, config_dirs: Iterable[str | Path] = SYSTEM_CONFIG_DIRS,
) -> dict[str, str]:
    """The variables to add to ``environ`` for PyAV's bundled ALSA library (none for a PyAV using the system's).

    Raises :class:`AlsaConfigError` when the bundled library would find no configuration.
    """
    if bundled is None:
        return {}
    added = {} if environ.get("ALSA_PLUGIN_DIR") else {"ALSA_PLUGIN_DIR": str(bundled.parent)}
    chosen = environ.get("ALSA_CONFIG_DIR")
    if chosen:
        if not os.path.isabs(chosen):
            raise AlsaConfigError(
                f"ALSA_CONFIG_DIR={chosen!r}: alsa-lib ignores a relative folder; give an absolute one")
        return added
    for folder in map(Path, config_dirs):
        if (folder / "alsa.conf").is_file():
            return {**added, "ALSA_CONFIG_DIR": str(folder.resolve())}
    if environ.get("ALSA_CONFIG_PATH"):
        return added  # the user's own top file, which may need nothing else
    searched = ", ".join(str(Path(d) / "alsa.conf") for d in config_dirs)
    raise AlsaConfigError(
        f"PyAV's bundled ALSA library ({bundled.name}) needs the system's ALSA configuration, and there is none "
        f"({searched} missing): install it (Debian/Ubuntu: apt install libasound2-data; Fedora: alsa-lib) "
        "or set ALSA_CONFIG_DIR to the folder that holds alsa.conf"
    )


def configure_alsa() -> dict[str, str]:
    """Set what :func:`alsa_environment` says in this process.

    alsa-lib reads the variables once, at the first device it opens, so this runs before any ALSA input
    is opened (when the microphone spec is parsed).
    """
    added = alsa_environment(os.environ, bundled_libasound(), SYSTEM_CONFIG_DIRS)
    for name, value in added.items():
        os.environ[name] = value
        logger.info("PyAV's bundled ALSA library: %s=%s", name, value)
    return added


# -- the library itself -------------------------------------------------------------------------------------------
#: alsa-lib's error handler type: ``(file, line, function, err, fmt, ...)``. Declared without the variadic tail,
#: which the handler never reads: on the Linux ABIs the caller passes variadic arguments where a callee that
#: ignores them does not look (registers and the caller's stack), so the call is sound.
_ERROR_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
_library: ctypes.CDLL | None = None
_handler = None  # kept alive for as long as alsa-lib may call it


def _log_alsa_error(file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None) -> None:
    # The format's arguments cannot be read here (see _ERROR_HANDLER): the template is logged as written.
    logger.debug("alsa-lib %s: %s%s", (function or b"?").decode(errors="replace"),
                 (fmt or b"").decode(errors="replace"), f" ({os.strerror(-err)})" if err < 0 else "")


def libasound() -> ctypes.CDLL | None:
    """The libasound PyAV's FFmpeg uses (the wheel's own copy, else the system's), its errors routed to logging.

    Left alone, alsa-lib prints every step of a failed device lookup on stderr ("ALSA lib confmisc.c:855:
    (parse_card) cannot find card '0'", eight lines for one missing card) before FFmpeg reports the failure, which
    migr-rt already words for the user. Its error handler is set once to log them at debug level instead
    (``migr-rt -vv`` shows them). dlopen of the file PyAV already
    loaded returns that same library, so the handler and the lookups below act on FFmpeg's copy.
    """
    global _library, _handler
    if _library is None:
        path = bundled_libasound() or ctypes.util.find_library("asound")
        if path is None:
            return None
        try:
            library = ctypes.CDLL(str(path))
            handler = _ERROR_HANDLER(_log_alsa_error)
            library.snd_lib_error_set_handler(handler)
        except (OSError, AttributeError) as exc:  # no such library or symbol: leave alsa-lib as it is
            logger.debug("alsa-lib at %s left as it is: %s", path, exc)
            return None
        _library, _handler = library, handler
    return _library


def pcm_problem(device: str) -> str | None:
    """Why ALSA cannot resolve the capture device ``device`` from its configuration, or None if it can.

    Resolving reads configuration only: no device or plugin is opened (a PCM that reads a pipe, e.g. ALSA's
    ``file`` plugin, is left for the capture to open once). It finds what no retry can fix (an unknown name,
    ``default`` on a machine with no sound card) in milliseconds, before the model loads; a device that resolves
    may still fail to open (busy, unplugged, a plugin library this libasound cannot load).
    """
    library = libasound()
    if library is None:
        return None
    if library.snd_config_update() < 0:
        return None  # the configuration cannot be read at all: the open names that
    found = ctypes.c_void_p()
    config = ctypes.c_void_p.in_dll(library, "snd_config")
    rc = library.snd_config_search_definition(config, b"pcm", device.encode(), ctypes.byref(found))
    if rc < 0:
        return os.strerror(-rc)
    library.snd_config_delete(found)
    return None
