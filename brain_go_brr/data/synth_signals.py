"""Signal models of the synthetic corpus: scalp EEG background, artifacts and seizures in µV.

Every generator here is vectorized numpy on whole arrays (no per-sample Python loops; the
few loops run over events such as one muscle burst or one seizure). Potentials are modelled
at 23 scalp electrodes (the 19 of :data:`~brain_go_brr.data.channels.CHANNELS` plus A1, A2,
T1, T2) on a flat 2-D projection of the 10-20 layout, so spatial effects (alpha over the
occiput, blinks at the frontal pole, a seizure spreading from its focus to the neighbours)
follow scalp distance. :func:`render_record` turns a :class:`RecordSpec` into the EDF
channels of one TUSZ-style file (referenced to ``-REF`` or linked ears ``-LE``).

Time is in seconds and amplitudes in µV until the last step; arrays are float32 while being
built (halves the memory traffic) and float64 only when handed to the EDF writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal as sps

from brain_go_brr.data.channels import CHANNELS

#: Electrodes whose potential is simulated: the 19 channels, the ear references, T1/T2.
ELECTRODES: tuple[str, ...] = (*CHANNELS, "A1", "A2", "T1", "T2")
_E = {name: i for i, name in enumerate(ELECTRODES)}

# 2-D azimuthal projection of the 10-20 positions (x to the right ear, y to the nose; the
# outer ring Fp-F7-T3-T5-O has radius 1, so neighbouring electrodes are about 0.5 apart).
_XY: dict[str, tuple[float, float]] = {
    "Fp1": (-0.31, 0.95), "Fp2": (0.31, 0.95),
    "F7": (-0.81, 0.59), "F8": (0.81, 0.59),
    "F3": (-0.40, 0.52), "F4": (0.40, 0.52), "Fz": (0.0, 0.50),
    "T3": (-1.00, 0.0), "T4": (1.00, 0.0),
    "C3": (-0.50, 0.0), "C4": (0.50, 0.0), "Cz": (0.0, 0.0),
    "T5": (-0.81, -0.59), "T6": (0.81, -0.59),
    "P3": (-0.40, -0.52), "P4": (0.40, -0.52), "Pz": (0.0, -0.50),
    "O1": (-0.31, -0.95), "O2": (0.31, -0.95),
    "A1": (-1.15, -0.12), "A2": (1.15, -0.12),
    "T1": (-0.95, 0.32), "T2": (0.95, 0.32),
}  # fmt: skip
XY: np.ndarray = np.array([_XY[name] for name in ELECTRODES])  # (23, 2)
DIST: np.ndarray = np.linalg.norm(XY[:, None, :] - XY[None, :, :], axis=-1)  # (23, 23)

# Scalp gain of each generator (unlisted electrodes: the default in _gains).
_ALPHA_GAIN = {
    "O1": 1.0, "O2": 1.0, "P3": 0.8, "P4": 0.8, "Pz": 0.75, "T5": 0.6, "T6": 0.6,
    "C3": 0.3, "C4": 0.3, "Cz": 0.3, "T3": 0.25, "T4": 0.25, "F3": 0.15, "F4": 0.15,
    "Fz": 0.15, "F7": 0.12, "F8": 0.12, "Fp1": 0.08, "Fp2": 0.08,
}  # fmt: skip
_BLINK_GAIN = {
    "Fp1": 1.0, "Fp2": 1.0, "F7": 0.5, "F8": 0.5, "F3": 0.4, "F4": 0.4, "Fz": 0.4,
    "T1": 0.25, "T2": 0.25, "C3": 0.1, "C4": 0.1, "Cz": 0.1,
}  # fmt: skip
_SPIKE_WAVE_GAIN = {
    "Fp1": 0.9, "Fp2": 0.9, "F3": 1.0, "F4": 1.0, "Fz": 1.0, "F7": 0.8, "F8": 0.8,
    "C3": 0.85, "C4": 0.85, "Cz": 0.9, "P3": 0.7, "P4": 0.7, "Pz": 0.7, "O1": 0.55,
    "O2": 0.55, "T3": 0.6, "T4": 0.6, "T5": 0.55, "T6": 0.55, "T1": 0.6, "T2": 0.6,
}  # fmt: skip
LEFT_TEMPORAL = ("F7", "T3", "T5", "T1", "A1")
RIGHT_TEMPORAL = ("F8", "T4", "T6", "T2", "A2")
#: Electrodes a focal seizure may start at: in every montage's TCP bipolar pairs.
FOCI: tuple[str, ...] = tuple(c for c in CHANNELS if c not in ("Fz", "Pz"))


def _gains(table: dict[str, float], default: float = 0.05) -> np.ndarray:
    return np.array([table.get(name, default) for name in ELECTRODES], dtype=np.float32)


# Kasdin's 3-pole approximation of a 1/f (pink) spectrum, flat within ±0.5 dB over
# four decades: white noise through it gives the background's power-law spectrum.
_PINK_SOS = sps.tf2sos(
    [0.049922035, -0.095993537, 0.050612699, -0.004408786],
    [1.0, -2.494956002, 2.017265875, -0.522189400],
).astype(np.float32)


@dataclass(frozen=True)
class SeizureSpec:
    """One seizure: its labelled interval and the parameters of its discharge.

    Focal seizures (``fnsz``, ``cpsz``, ``tcsz``) start at ``focus`` at ``f_start_hz`` and
    slow to ``f_end_hz`` while their amplitude grows; electrode ``e`` joins after
    ``dist(focus, e) / spread_speed`` seconds with gain ``exp(-dist / spread_length)``.
    Generalized ones (``gnsz``, ``absz``) are spike-and-wave on every electrode at once.
    """

    onset_s: float
    offset_s: float
    label: str  # TUSZ seizure type: fnsz, cpsz, tcsz, gnsz, absz
    focus: str | None  # electrode name for focal seizures, None for generalized
    f_start_hz: float
    f_end_hz: float
    amplitude_uV: float  # peak amplitude at the focus (focal) or frontal leads (generalized)
    spread_speed: float  # electrode-plane units per second (neighbours are ~0.5 apart)
    spread_length: float  # e-fold distance of the gain, same units

    @property
    def generalized(self) -> bool:
        return self.focus is None


@dataclass(frozen=True)
class ArtifactSpec:
    """A seizure-like artifact (hard negative, never labelled).

    ``chewing``: bursts of broadband muscle activity pulsing at ``rate_hz`` (5-8 Hz) on both
    temporal chains, constant rhythm, abrupt on and off. ``movement``: slow ``rate_hz``
    (1-3 Hz) large waves on a few neighbouring electrodes, no evolution and no spread.
    """

    kind: str  # "chewing" | "movement"
    onset_s: float
    offset_s: float
    rate_hz: float
    amplitude_uV: float
    electrodes: tuple[str, ...]


@dataclass(frozen=True)
class RecordSpec:
    """Everything that fixes one synthetic recording except its random noise."""

    duration_s: int  # whole seconds (EDF data records are 1 s)
    sfreq: int  # Hz; TUSZ uses 250, 256, 400 and 512 most
    montage: str  # 01_tcp_ar | 02_tcp_le | 03_tcp_ar_a
    labels: tuple[str, ...]  # EDF signal labels, in file order
    background_uV: float  # RMS of the 1/f background per electrode
    alpha_hz: float
    alpha_uV: float  # RMS of the alpha rhythm at O1/O2
    blink_rate_hz: float
    muscle_rate_hz: float
    pop_rate_hz: float
    line_uV: float  # 60 Hz amplitude on a typical electrode
    heart_rate_bpm: float
    seizures: tuple[SeizureSpec, ...] = ()
    artifacts: tuple[ArtifactSpec, ...] = ()


@dataclass
class Rendered:
    """The EDF-ready signals of one recording and what was put into them."""

    data_uV: np.ndarray  # (n_channels, n_samples) float64
    labels: tuple[str, ...]
    sfreq: int
    events: dict[str, int] = field(default_factory=dict)  # counts of blinks, muscle, pops


def electrode_of(label: str) -> str | None:
    """The simulated electrode behind an EDF label (``EEG T7-REF`` -> ``T3``), else None."""
    name = label.upper().removeprefix("EEG ").split("-")[0].strip()
    name = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}.get(name, name)
    for electrode in ELECTRODES:
        if electrode.upper() == name:
            return electrode
    return None


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def pink_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """1/f noise along the last axis (arbitrary scale), float32."""
    # sosfilt runs this filter faster than lfilter on (23, n) float32 input.
    return sps.sosfilt(_PINK_SOS, _unit_noise(rng, shape), axis=-1).astype(np.float32, copy=False)


def pink_background(rng: np.random.Generator, n: int, rms_uV: float) -> np.ndarray:
    """Spatially correlated 1/f noise at every electrode. Returns (23, n) float32 µV."""
    pink = pink_noise(rng, (len(ELECTRODES), n))
    # Volume conduction: each electrode sees a Gaussian-weighted mix of nearby sources.
    mix = np.exp(-(DIST**2) / (2 * 0.3**2))
    mix /= np.linalg.norm(mix, axis=1, keepdims=True)
    out = mix.astype(np.float32) @ pink
    out *= np.float32(rms_uV / (out.std() + 1e-12))
    jitter = rng.uniform(0.8, 1.25, size=(len(ELECTRODES), 1)).astype(np.float32)
    return out * jitter


def _slow_envelope(rng: np.random.Generator, n: int, sfreq: float, period_s: float) -> np.ndarray:
    """A smooth positive random envelope (mean ~1) varying over ``period_s``. Shape (n,)."""
    n_knots = max(2, int(n / sfreq / period_s) + 2)
    knots = rng.standard_normal(n_knots)
    x = np.linspace(0, n_knots - 1, n, dtype=np.float64)
    return np.clip(1.0 + 0.5 * np.interp(x, np.arange(n_knots), knots), 0.1, 2.5).astype(np.float32)


def alpha_rhythm(
    rng: np.random.Generator, n: int, sfreq: float, alpha_hz: float, rms_uV: float
) -> np.ndarray:
    """Waxing and waning posterior alpha, strongest at O1/O2/P3/P4. Returns (23, n)."""
    sos = sps.butter(2, [alpha_hz - 1.0, alpha_hz + 1.0], btype="bandpass", fs=sfreq, output="sos")
    source = sps.sosfilt(sos, _unit_noise(rng, (n,))).astype(np.float32)
    source *= np.float32(rms_uV / (source.std() + 1e-12))
    source *= _slow_envelope(rng, n, sfreq, period_s=4.0)
    return _gains(_ALPHA_GAIN, default=0.1)[:, None] * source[None, :]


def _impulse_train(
    rng: np.random.Generator, n: int, sfreq: float, rate_hz: float, amp: tuple[float, float]
) -> tuple[np.ndarray, int]:
    """Poisson impulses with uniform random amplitudes. Returns ((n,) float32, count)."""
    count = int(rng.poisson(rate_hz * n / sfreq))
    train = np.zeros(n, dtype=np.float32)
    idx = rng.integers(0, n, size=count)
    np.add.at(train, idx, rng.uniform(*amp, size=count).astype(np.float32))
    return train, count


def eye_blinks(
    rng: np.random.Generator, n: int, sfreq: float, rate_hz: float
) -> tuple[np.ndarray, int]:
    """Blinks: 0.2-0.4 s positive half-cosine bumps at Fp1/Fp2, weaker at F7/F8/F3/F4.

    Returns ((23, n) µV, number of blinks).
    """
    train, count = _impulse_train(rng, n, sfreq, rate_hz, (60.0, 180.0))
    width = int(rng.uniform(0.2, 0.4) * sfreq)
    kernel = np.sin(np.linspace(0, np.pi, width, dtype=np.float32))
    source = sps.oaconvolve(train, kernel)[:n].astype(np.float32)
    return _gains(_BLINK_GAIN, default=0.0)[:, None] * source[None, :], count


def heartbeat(rng: np.random.Generator, n: int, sfreq: float, bpm: float) -> np.ndarray:
    """An EKG lead in µV: QRS complexes (about 1 mV) with beat-to-beat jitter. Shape (n,)."""
    period = 60.0 / bpm
    n_beats = int(n / sfreq / period) + 2
    beats_s = np.cumsum(rng.normal(period, 0.03 * period, size=n_beats))
    idx = (beats_s * sfreq).astype(np.int64)
    idx = idx[idx < n]
    train = np.zeros(n, dtype=np.float32)
    train[idx] = 1.0
    t = np.arange(-0.1, 0.3, 1 / sfreq, dtype=np.float32)
    qrs = 1000 * np.exp(-((t / 0.012) ** 2)) - 150 * np.exp(-(((t - 0.03) / 0.015) ** 2))
    t_wave = 250 * np.exp(-(((t - 0.22) / 0.04) ** 2))
    ekg = sps.oaconvolve(train, qrs + t_wave)[int(0.1 * sfreq) : int(0.1 * sfreq) + n]
    return ekg.astype(np.float32) + 10 * _unit_noise(rng, (n,))


def muscle_bursts(rng: np.random.Generator, v: np.ndarray, sfreq: float, rate_hz: float) -> int:
    """Add broadband (>20 Hz) muscle bursts of 0.5-4 s on one or both temporal chains to ``v``.

    ``v`` is (23, n) µV, changed in place. Returns the number of bursts.
    """
    n = v.shape[1]
    count = int(rng.poisson(rate_hz * n / sfreq))
    sos = sps.butter(4, 20.0, btype="highpass", fs=sfreq, output="sos")
    sides = (LEFT_TEMPORAL, RIGHT_TEMPORAL, LEFT_TEMPORAL + RIGHT_TEMPORAL)
    for _ in range(count):
        length = int(rng.uniform(0.5, 4.0) * sfreq)
        start = int(rng.integers(0, max(1, n - length)))
        rows = [_E[e] for e in sides[int(rng.integers(0, 3))]]
        burst = sps.sosfilt(sos, _unit_noise(rng, (len(rows), length)), axis=-1)
        burst *= sps.windows.tukey(length, 0.3) * rng.uniform(10.0, 40.0)
        v[rows, start : start + length] += burst[:, : n - start].astype(np.float32)
    return count


def electrode_pops(rng: np.random.Generator, v: np.ndarray, sfreq: float, rate_hz: float) -> int:
    """Add electrode pops (a step of ±100-400 µV, then exponential decay) to one electrode each.

    ``v`` is (23, n) µV, changed in place. Returns the number of pops.
    """
    n = v.shape[1]
    count = int(rng.poisson(rate_hz * n / sfreq))
    for _ in range(count):
        tau_s = rng.uniform(0.1, 0.8)
        length = int(5 * tau_s * sfreq)
        start = int(rng.integers(0, n))
        amp = rng.choice([-1.0, 1.0]) * rng.uniform(100.0, 400.0)
        decay = amp * np.exp(-np.arange(length, dtype=np.float32) / (tau_s * sfreq))
        stop = min(n, start + length)
        v[int(rng.integers(0, len(ELECTRODES))), start:stop] += decay[: stop - start]
    return count


def line_noise(rng: np.random.Generator, n: int, sfreq: float, amp_uV: float) -> np.ndarray:
    """60 Hz mains pickup, one phase, electrode-dependent amplitude. Returns (23, n)."""
    t = np.arange(n, dtype=np.float64) / sfreq
    hum = np.sin(2 * np.pi * 60.0 * t + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    amps = amp_uV * rng.uniform(0.5, 1.5, size=len(ELECTRODES)).astype(np.float32)
    return amps[:, None] * hum[None, :]


def _segment(spec_onset: float, spec_offset: float, sfreq: float, n: int) -> tuple[int, int]:
    """Samples [a, b) whose times t = i / sfreq satisfy onset <= t < offset."""
    a = min(n, int(np.ceil(spec_onset * sfreq - 1e-9)))
    b = min(n, int(np.ceil(spec_offset * sfreq - 1e-9)))
    return a, b


def _evolving_phase(t: np.ndarray, f0: float, f1: float, duration_s: float) -> np.ndarray:
    """Phase (rad) of a rhythm whose frequency moves linearly from f0 to f1. t: (L,) s."""
    return 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t**2 / duration_s)


def focal_spread(sz: SeizureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Gain (0 = not involved) and join delay in s of each electrode in a focal seizure.

    Returns (gain (23,), delay_s (23,)); electrodes that would join in the last 2 s, or with
    a gain under 0.15, are left out so every involved electrode shows the rhythm clearly.
    """
    if sz.focus is None:
        raise ValueError(f"seizure {sz.label} at {sz.onset_s} s is generalized: it has no focus")
    dist = DIST[_E[sz.focus]]  # (23,)
    delay = dist / sz.spread_speed
    gain = np.exp(-dist / sz.spread_length)
    gain[(gain < 0.15) | (delay > sz.offset_s - sz.onset_s - 2.0)] = 0.0
    return gain, delay


def focal_seizure(sz: SeizureSpec, t: np.ndarray) -> np.ndarray:
    """Evolving rhythmic discharge spreading from ``sz.focus``. t: (L,) s since onset -> (23, L)."""
    duration = sz.offset_s - sz.onset_s
    gain, delay = focal_spread(sz)
    dist = DIST[_E[sz.focus or "Cz"]]
    # Amplitude builds over the first 40 % of the seizure, as the discharge organises.
    growth = 0.4 + 0.6 * np.clip(t / (0.4 * duration), 0.0, 1.0)
    taper = np.clip((duration - t) / 0.3, 0.0, 1.0)
    # Each electrode joins after its delay (1 s ramp) and lags the focus by up to ~40 ms.
    join = np.clip((t[None, :] - delay[:, None]) / 1.0, 0.0, 1.0)  # (23, L)
    lag = 0.04 * np.clip(dist / 0.5, 0.0, 2.0)[:, None]
    phase = _evolving_phase(t[None, :] - lag, sz.f_start_hz, sz.f_end_hz, duration)
    # Harmonics at 1/k^1.5 give the sharp, sawtooth-like waves of an ictal rhythm.
    wave = np.sin(phase) + 0.45 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)
    out = (sz.amplitude_uV / 1.4) * gain[:, None] * join * (growth * taper)[None, :] * wave
    return out.astype(np.float32)


def spike_and_wave(sz: SeizureSpec, t: np.ndarray) -> np.ndarray:
    """Generalized ~3 Hz spike-and-wave on every electrode, frontal maximum. (L,) -> (23, L)."""
    duration = sz.offset_s - sz.onset_s
    psi = np.mod(_evolving_phase(t, sz.f_start_hz, sz.f_end_hz, duration), 2 * np.pi)
    spike = -np.exp(-(((psi - 0.6) / 0.3) ** 2))
    slow = 0.7 * np.exp(-(((psi - 3.3) / 1.0) ** 2))
    ramp = np.clip(t / 0.5, 0.0, 1.0) * np.clip((duration - t) / 0.3, 0.0, 1.0)
    source = sz.amplitude_uV * ramp * (spike + slow)
    return (_gains(_SPIKE_WAVE_GAIN, default=0.3)[:, None] * source[None, :]).astype(np.float32)


def chewing(art: ArtifactSpec, t: np.ndarray, rng: np.random.Generator, sfreq: float) -> np.ndarray:
    """Bursty muscle activity pulsing at ``rate_hz`` on the listed electrodes. (L,) -> (23, L)."""
    out = np.zeros((len(ELECTRODES), t.size), dtype=np.float32)
    rows = [_E[e] for e in art.electrodes]
    sos = sps.butter(4, 25.0, btype="highpass", fs=sfreq, output="sos")
    muscle = sps.sosfilt(sos, _unit_noise(rng, (len(rows), t.size)), axis=-1)
    pulse = (0.5 + 0.5 * np.sin(2 * np.pi * art.rate_hz * t)) ** 2
    # Each jaw contraction also moves the electrodes a little: a small in-rhythm slow wave.
    slow = 0.25 * np.sin(2 * np.pi * art.rate_hz * t)
    out[rows] = art.amplitude_uV * (muscle * pulse[None, :] + slow[None, :])
    return out


def movement(art: ArtifactSpec, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slow rhythmic movement waves (constant rate, jittered cycles) on a few electrodes."""
    out = np.zeros((len(ELECTRODES), t.size), dtype=np.float32)
    rows = [_E[e] for e in art.electrodes]
    n_knots = max(2, int(t[-1] if t.size else 0) + 2)
    jitter = np.interp(t, np.arange(n_knots), rng.normal(0.0, 0.6, n_knots))
    wave = np.sin(2 * np.pi * art.rate_hz * t + jitter)
    wave = np.sign(wave) * np.abs(wave) ** 0.7  # flattened tops: a swaying, not sinusoidal, wave
    weights = rng.uniform(0.6, 1.0, size=(len(rows), 1))
    out[rows] = art.amplitude_uV * weights * wave[None, :]
    return out


def _photic(rng: np.random.Generator, n: int, sfreq: float) -> np.ndarray:
    """Photic stimulator trace: zero, or one block of flashes at 1-20 Hz. Shape (n,)."""
    trace = np.zeros(n, dtype=np.float32)
    if rng.random() < 0.3 and n > 60 * sfreq:
        rate = float(rng.integers(1, 21))
        a = int(rng.integers(0, n - int(30 * sfreq)))
        t = np.arange(int(20 * sfreq)) / sfreq
        trace[a : a + t.size] = 100.0 * (np.mod(t * rate, 1.0) < 0.1)
    return trace


def render_record(spec: RecordSpec, rng: np.random.Generator) -> Rendered:
    """Simulate one recording: electrode potentials -> reference -> EDF channels in µV.

    Steps: 1. 1/f background, alpha, blinks, muscle, pops, heartbeat leak and 60 Hz at the
    23 electrodes; 2. seizures and hard-negative artifacts added on their intervals;
    3. re-referenced (``-REF``: a common reference electrode's noise; ``-LE``: minus the mean
    of A1 and A2); 4. each EDF label mapped to its electrode or extra channel.
    """
    sfreq = float(spec.sfreq)
    n = spec.duration_s * spec.sfreq
    v = pink_background(rng, n, spec.background_uV)
    v += alpha_rhythm(rng, n, sfreq, spec.alpha_hz, spec.alpha_uV)
    blinks, n_blinks = eye_blinks(rng, n, sfreq, spec.blink_rate_hz)
    v += blinks
    n_muscle = muscle_bursts(rng, v, sfreq, spec.muscle_rate_hz)
    n_pops = electrode_pops(rng, v, sfreq, spec.pop_rate_hz)
    ekg = heartbeat(rng, n, sfreq, spec.heart_rate_bpm)
    for ear in ("A1", "T5", "T3"):
        v[_E[ear]] += np.float32(rng.uniform(0.002, 0.006)) * ekg
    v += line_noise(rng, n, sfreq, spec.line_uV)

    for sz in spec.seizures:
        a, b = _segment(sz.onset_s, sz.offset_s, sfreq, n)
        t = np.arange(a, b) / sfreq - sz.onset_s
        v[:, a:b] += spike_and_wave(sz, t) if sz.generalized else focal_seizure(sz, t)
    for art in spec.artifacts:
        a, b = _segment(art.onset_s, art.offset_s, sfreq, n)
        t = np.arange(a, b) / sfreq - art.onset_s
        v[:, a:b] += chewing(art, t, rng, sfreq) if art.kind == "chewing" else movement(art, t, rng)

    if spec.montage == "02_tcp_le":
        v -= 0.5 * (v[_E["A1"]] + v[_E["A2"]])[None, :]
    else:
        reference = pink_noise(rng, (n,))
        v -= np.float32(4.0 / (reference.std() + 1e-12)) * reference[None, :]

    photic = _photic(rng, n, sfreq)
    data = np.zeros((len(spec.labels), n), dtype=np.float64)
    for row, label in enumerate(spec.labels):
        electrode = electrode_of(label) if label.upper().startswith("EEG ") else None
        if "EKG" in label.upper():
            data[row] = ekg
        elif label.upper().startswith("PHOTIC"):
            data[row] = photic
        elif electrode is not None:
            data[row] = v[_E[electrode]]
        # IBI, BURSTS and SUPPR stay flat, as they are in most TUSZ files.
    return Rendered(
        data_uV=data,
        labels=spec.labels,
        sfreq=spec.sfreq,
        events={"blinks": n_blinks, "muscle_bursts": n_muscle, "electrode_pops": n_pops},
    )
