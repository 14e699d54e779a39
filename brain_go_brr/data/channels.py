"""The 19 channels of the 10-20 system in the SzCORE / EpilepsyBench order, and name rules.

Label styles in the field's files, all read as the same 19 electrodes:

- TUSZ: ``EEG FP1-REF`` (``01_tcp_ar``, ``03_tcp_ar_a``) or ``EEG FP1-LE`` (``02_tcp_le``);
- SzCORE's benchmark input and ``epilepsy2bids``: ``Fp1-Avg``;
- Siena: ``EEG Fp1``; SeizeIT1: bare ``Fp1``;
- other reference suffixes: ``-Ref``, ``-AR``, ``-CAR``, ``-Av``, ear and mastoid references
  (``-A1``, ``-A2``, ``-A1A2``, ``-M1``, ``-M2``, ``-LM``);
- any case, and the 10-10 names T7, T8, P7, P8 for T3, T4, T5, T6.

A label that is the difference of two electrodes (CHB-MIT's double banana ``FP1-F7``) is a
bipolar derivation, not an electrode: :func:`bipolar_labels` finds those, so that a
recording holding only them is refused with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

#: The 19 channels every record is mapped onto, in this order (index = row of the cache).
CHANNELS: tuple[str, ...] = (
    "Fp1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "Fz", "Cz",
    "Pz", "Fp2", "F4", "C4", "P4", "O2", "F8", "T4", "T6",
)  # fmt: skip
N_CHANNELS = len(CHANNELS)


def _mirror_name(name: str) -> str:
    """10-20 name of the electrode mirrored across the midline: odd numbers (left) and even
    numbers (right) swap, 1<->2, 3<->4, ...; midline ``z`` electrodes stay."""
    if name.endswith("z"):
        return name
    stem = name.rstrip("0123456789")
    number = int(name[len(stem) :])
    return f"{stem}{number + 1 if number % 2 else number - 1}"


#: Left-right mirror of each channel, as indices into ``CHANNELS`` (midline ones map to
#: themselves): ``x[..., MIRROR, :]`` is the recording with its hemispheres swapped.
MIRROR: tuple[int, ...] = tuple(CHANNELS.index(_mirror_name(name)) for name in CHANNELS)

#: The 171 electrode pairs (i, j), i < j, in row-major order over ``CHANNELS``.
PAIRS: tuple[tuple[int, int], ...] = tuple(
    (i, j) for i in range(N_CHANNELS) for j in range(i + 1, N_CHANNELS)
)

#: Channels that may be missing and are then interpolated (about 249 TUSZ files lack them).
INTERPOLATABLE: frozenset[str] = frozenset({"Fz", "Pz"})

#: Default aliases (canonical upper-case key -> 10-20 name).
DEFAULT_ALIASES: Mapping[str, str] = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}

_UPPER = {name.upper(): name for name in CHANNELS}
_PREFIX = re.compile(r"^(EEG)\s*", re.IGNORECASE)
_SUFFIX = re.compile(r"-(REF|LE|AR|AVG|AV|CAR|A1|A2|A1A2|A12|M1|M2|LM)$", re.IGNORECASE)
# An electrode name of the 10-10 / 10-20 systems (FP1, FT10, CPZ, T7, A1, ...).
_ELECTRODE = re.compile(r"^(NZ|FP|AF|FC|FT|CP|TP|PO|F|C|T|P|O|I|A|M)(Z|\d{1,2})$", re.IGNORECASE)


def canonical_name(raw: str, aliases: Mapping[str, str] = DEFAULT_ALIASES) -> str | None:
    """The 10-20 name of a raw EDF label, or ``None`` if it is not one of the 19.

    ``"EEG FP1-REF"`` -> ``"Fp1"``, ``"EEG T7-LE"`` -> ``"T3"``, ``"EKG1-REF"`` -> ``None``.
    Strips the ``EEG`` prefix, the reference suffix, spaces and case, then applies ``aliases``.
    """
    name = _SUFFIX.sub("", _PREFIX.sub("", raw.strip())).replace(" ", "").upper()
    upper_aliases = {k.upper(): v for k, v in aliases.items()}
    name = upper_aliases.get(name, name)
    return _UPPER.get(name.upper())


def map_channels(
    raw_names: Iterable[str], aliases: Mapping[str, str] = DEFAULT_ALIASES
) -> dict[str, str]:
    """Map canonical name -> first raw label that provides it (later duplicates are ignored)."""
    found: dict[str, str] = {}
    for raw in raw_names:
        canon = canonical_name(raw, aliases)
        if canon is not None and canon not in found:
            found[canon] = raw
    return found


def bipolar_labels(raw_names: Iterable[str]) -> list[str]:
    """The labels that are differences of two electrodes (``FP1-F7``, ``EEG T7-P7``).

    Reference suffixes (``-REF``, ``-Avg``, ``-A1``, ...) are references, not electrodes of a
    pair, so ``Fp1-A1`` is not bipolar.
    """
    out = []
    for raw in raw_names:
        label = _PREFIX.sub("", raw.strip()).replace(" ", "")
        first, sep, second = label.partition("-")
        if (
            sep
            and _ELECTRODE.match(first)
            and _ELECTRODE.match(second)
            and not _SUFFIX.search(label)
        ):
            out.append(raw.strip())
    return out
