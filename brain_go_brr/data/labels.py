"""Seizure events (seconds) -> per-sample masks at the model rate, and clipping to the record.

Times stay in seconds until :func:`events_to_mask`, the one place they become samples.
Sample ``k`` at ``sfreq`` Hz covers ``[k / sfreq, (k + 1) / sfreq)``; it is a seizure sample
when that interval overlaps a seizure, so an event ``[start_s, stop_s)`` marks samples
``floor(start_s * sfreq)`` up to, not including, ``ceil(stop_s * sfreq)``. Because this depends
only on seconds, a seizure lands on the same 256 Hz samples whatever the EDF's own rate.
"""

from __future__ import annotations

import math

import numpy as np

from brain_go_brr.annotations import Event

# Annotation times are printed with 4 decimals; this absorbs float noise in start_s * sfreq
# (e.g. 10.0000001 * 256) without moving a boundary that is really inside a sample.
_EPS_SAMPLES = 1e-6


def clip_events(events: list[Event], duration_s: float) -> tuple[list[Event], list[str]]:
    """Clip events to ``[0, duration_s]``; returns the kept events and one warning per change.

    An event that starts at or after the end is dropped; one that runs past the end is cut.
    """
    kept: list[Event] = []
    notes: list[str] = []
    for event in events:
        if event.start_s >= duration_s:
            notes.append(
                f"{event.label} event {event.start_s:.4f}-{event.stop_s:.4f} s starts after the "
                f"end of the recording ({duration_s:.4f} s); dropped"
            )
        elif event.stop_s > duration_s:
            notes.append(
                f"{event.label} event {event.start_s:.4f}-{event.stop_s:.4f} s runs past the end "
                f"of the recording ({duration_s:.4f} s); clipped to {duration_s:.4f} s"
            )
            kept.append(Event(event.start_s, duration_s, event.label, event.confidence))
        else:
            kept.append(event)
    return kept, notes


def event_samples(event: Event, sfreq: float) -> tuple[int, int]:
    """The half-open sample range ``[first, stop)`` of samples overlapping ``event``."""
    first = math.floor(event.start_s * sfreq + _EPS_SAMPLES)
    stop = math.ceil(event.stop_s * sfreq - _EPS_SAMPLES)
    return max(first, 0), max(stop, first)


def events_to_mask(events: list[Event], n_samples: int, sfreq: float) -> np.ndarray:
    """(n_samples,) uint8 mask: 1 on every sample that overlaps one of ``events``."""
    mask = np.zeros(n_samples, dtype=np.uint8)
    for event in events:
        first, stop = event_samples(event, sfreq)
        mask[first : min(stop, n_samples)] = 1
    return mask
