"""Point PyAV's bundled ALSA library at the system's ALSA configuration.

PyAV's Linux wheels carry their own ``libasound`` (in ``av.libs/``), built to
read its configuration from a folder of the wheel's build machine
(``/tmp/vendor/share/alsa``). That folder does not exist on the user's machine,
so without help every ALSA device fails to open with an uninformative
``Input/output error`` — ``default``, ``hw:0`` and ``plughw:1,0`` alike.
``ALSA_CONFIG_DIR`` (read by alsa-lib >= 1.2.5) points it at the system's
configuration instead, which also pulls in ``/etc/asound.conf`` and
``~/.asoundrc``. A user who already set ``ALSA_CONFIG_DIR`` or
``ALSA_CONFIG_PATH`` keeps theirs, and a PyAV linked against the system's
``libasound`` needs nothing.

ALSA plugins that live in separate shared objects (``pulse``, ``pipewire``,
``jack``) stay out of reach of the bundled library: they are built against the
system's ``libasound``. Hardware devices (``hw:``, ``plughw:``) and the
built-in plugins (``dsnoop``, ``plug``, ``file``, ``null`` ...) work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import av

logger = logging.getLogger(__name__)

#: Where distributions keep alsa.conf (Debian/Ubuntu/Fedora/Arch; Alpine; a source build).
SYSTEM_CONFIG_DIRS = ("/usr/share/alsa", "/usr/local/share/alsa", "/etc/alsa")
USER_VARIABLES = ("ALSA_CONFIG_DIR", "ALSA_CONFIG_PATH")


class AlsaConfigError(RuntimeError):
    """No ALSA configuration the bundled library could read; the message says what to install or set."""


def bundled_libasound() -> Path | None:
    """PyAV's own copy of libasound, if this PyAV is a wheel that carries one."""
    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    return next(iter(sorted(libs.glob("libasound*.so*"))), None) if libs.is_dir() else None


def alsa_environment(
    environ: Mapping[str, str], bundled: Path | None, config_dirs: Iterable[str | Path] = SYSTEM_CONFIG_DIRS,
) -> dict[str, str]:
    """The variables to add to ``environ`` so the ALSA library PyAV uses finds a configuration (often none).

    Raises :class:`AlsaConfigError` when PyAV's bundled library would find none.
    """
    if bundled is None or any(environ.get(name) for name in USER_VARIABLES):
        return {}
    for folder in map(Path, config_dirs):
        if (folder / "alsa.conf").is_file():
            return {"ALSA_CONFIG_DIR": str(folder)}
    searched = ", ".join(str(Path(d) / "alsa.conf") for d in config_dirs)
    raise AlsaConfigError(
        f"PyAV's bundled ALSA library ({bundled.name}) needs the system's ALSA configuration, and there is none "
        f"({searched} missing): install it (Debian/Ubuntu: apt install libasound2-data; Fedora: alsa-lib) "
        "or set ALSA_CONFIG_DIR to the folder that holds alsa.conf"
    )


def configure_alsa(config_dirs: Iterable[str | Path] | None = None) -> dict[str, str]:
    """Set what :func:`alsa_environment` says in this process.

    alsa-lib reads the variable once, at the first device it opens, so this runs before any ALSA input
    is opened (when the microphone spec is parsed).
    """
    added = alsa_environment(os.environ, bundled_libasound(), SYSTEM_CONFIG_DIRS if config_dirs is None else config_dirs)
    for name, value in added.items():
        os.environ[name] = value
        logger.info("PyAV's bundled ALSA library reads the system's configuration: %s=%s", name, value)
    return added
