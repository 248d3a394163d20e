"""WiFi CSI: the channel between one transmitter and three receive antennas, 114 subcarriers, 10 packets.

MM-Fi's WiFi is 1 Tx x 3 Rx on 5 GHz / 40 MHz (Atheros CSI tool, second-hand; research/mmfi.md), 10 packets
per 100 ms frame. The channel of subcarrier frequency f is a sum over propagation paths of length d:

    H(f) = sum_paths  a * exp(-j 2 pi f d / c)

so a path's phase falls linearly with its length, 2 pi f / c radians per metre. Paths: the line of sight
(attenuated when the body blocks it), static reflectors (walls, furniture) and body scatterers (three
points along each body capsule, bistatic amplitude ~ area / (d_tx d_rx)). The body moves between packets,
which is all the pose information WiFi carries. Then the impairments of commodity NICs:
- a random phase offset per packet (carrier frequency offset; common to the three antennas);
- a random linear phase slope over subcarriers per packet (symbol timing offset, ``STO_NS``);
- a fixed phase offset per antenna (receiver chains), drawn per sequence;
- automatic gain control: the gain holds, then settles on a new level a few dB from nominal
  (``AGC_JUMP_RATE`` per packet, ``AGC_JUMP_DB``);
- thermal noise at ``SNR_DB`` and 8-bit quantisation of I/Q (rounded and clipped to [-128, 127], nominal
  mean magnitude ``FULL_SCALE``), so deep fades become exact zeros, whose amplitude in dB is -inf, as in MM-Fi;
- a rare lost packet (``LOST_PACKET_RATE``) repeats the last received one (``held_packets``): the files hold
  only measured packets, never a packet without a finite value.
Stored per frame like MM-Fi: ``CSIamp`` = 20 log10 |H| (dB) and ``CSIphase`` = angle(H) wrapped to
(-pi, pi], both (3 antennas, 114 subcarriers, 10 packets) float64.
"""

from __future__ import annotations

import numpy as np

from poise.data.synth.lidar import intersect

C = 299_792_458.0
CENTRE_HZ = 5.32e9
SPACING_HZ = 312.5e3
SUBCARRIER_INDEX = np.r_[np.arange(-58, -1), np.arange(2, 59)]  # 114 data subcarriers of HT40
FREQS_HZ = CENTRE_HZ + SPACING_HZ * SUBCARRIER_INDEX
PACKETS = 10
PACKET_SPACING_S = 0.01
STO_NS = 20.0
AGC_JUMP_RATE = 0.03
AGC_JUMP_DB = 3.0
SNR_DB = 22.0
FULL_SCALE = 40.0  # mean |H| in quantisation steps (8-bit I/Q)
LOST_PACKET_RATE = 0.002
BODY_POINTS = (0.2, 0.5, 0.8)  # scatterers along each capsule
BODY_REFLECTIVITY = 0.8  # per m^2 of capsule area, relative to the line of sight at 1 m
LOS_BLOCKED = 0.35  # amplitude factor of a line of sight through the body


def channel(freqs: np.ndarray, lengths: np.ndarray, amps: np.ndarray, chunk: int = 64) -> np.ndarray:
    """H(f) = sum over paths of amps * exp(-j 2 pi f d / c); lengths/amps (n, ..., paths) -> (n, ..., len(freqs)).

    Evaluated as exp(-j 2 pi f0 d / c) (float64, per path) times exp(-j 2 pi (f - f0) d / c) (float32: the
    offset phase is small), which is the same number to ~1e-6 and several times faster; ``chunk`` rows of
    the leading axis at a time keep the temporaries small (a sequence has 60 M terms).
    """
    f0 = freqs.mean()
    df = (freqs - f0).astype(np.float32)
    out = np.empty(lengths.shape[:-1] + (len(freqs),), np.complex128)
    for i in range(0, len(lengths), chunk):
        d, a = lengths[i:i + chunk], amps[i:i + chunk]
        carrier = (a * np.exp(-2j * np.pi * f0 / C * d)).astype(np.complex64)
        offset = (-2 * np.pi / C * d[..., None]).astype(np.float32) * df
        rotor = np.empty(offset.shape, np.complex64)
        np.cos(offset, out=rotor.real)
        np.sin(offset, out=rotor.imag)
        out[i:i + chunk] = np.einsum("...p,...pf->...f", carrier, rotor)
    return out


def _paths(env, ends: np.ndarray, radii: np.ndarray):
    """Path lengths and amplitudes (packets, 3 antennas, paths) for body capsules ``ends`` (packets, C, 2, 3)."""
    n = ends.shape[0]
    tx, rx = env.wifi_tx, env.wifi_rx  # (3,), (3, 3)
    los = np.linalg.norm(rx - tx, axis=-1)  # (3,)
    los_amp = np.broadcast_to(1.0 / los, (n, 3)).copy()
    for a in range(3):  # the body in the line of sight attenuates it
        d = (rx[a] - tx) / los[a]
        blocked = (intersect(tx, d, ends[:, :, 0], ends[:, :, 1], radii[None]) < los[a]).any(1)
        los_amp[blocked, a] *= LOS_BLOCKED
    refl = env.reflectors
    r_len = np.linalg.norm(refl - tx, axis=-1)[None, :] + np.linalg.norm(rx[:, None] - refl[None], axis=-1)
    r_amp = env.reflectivity[None] / r_len
    u = np.array(BODY_POINTS)[None, None, :, None]
    body = (ends[:, :, :1] + u * (ends[:, :, 1:] - ends[:, :, :1])).reshape(n, -1, 3)  # (n, C*3, 3)
    length = np.linalg.norm(ends[:, :, 1] - ends[:, :, 0], axis=-1)  # (n, C)
    area = np.repeat(2 * np.pi * radii * length / len(BODY_POINTS), len(BODY_POINTS), axis=1)
    d_tx = np.linalg.norm(body - tx, axis=-1)  # (n, B)
    d_rx = np.linalg.norm(body[:, None] - rx[None, :, None], axis=-1)  # (n, 3, B)
    b_len = d_tx[:, None] + d_rx
    b_amp = BODY_REFLECTIVITY * area[:, None] / (d_tx[:, None] * d_rx)
    lengths = np.concatenate([los[None, :, None].repeat(n, 0), np.broadcast_to(r_len, (n, 3, len(refl))), b_len], -1)
    amps = np.concatenate([los_amp[..., None], np.broadcast_to(r_amp, (n, 3, len(refl))), b_amp], -1)
    return lengths, amps


def agc_gain_db(packets: int, rng: np.random.Generator) -> np.ndarray:
    """Per-packet AGC gain (dB): holds its level, and at a jump (``AGC_JUMP_RATE`` per packet) settles on a new
    level drawn around 0 dB with std ``AGC_JUMP_DB``; bounded, unlike a random walk."""
    jump = rng.random(packets) < AGC_JUMP_RATE
    levels = np.where(jump, rng.normal(0.0, AGC_JUMP_DB, packets), 0.0)
    last = np.maximum.accumulate(np.where(jump, np.arange(packets), -1))
    return np.where(last >= 0, levels[np.maximum(last, 0)], 0.0)


def held_packets(lost: np.ndarray) -> np.ndarray:
    """The packet each slot shows when the packets flagged ``lost`` never arrived: the last received one (the
    first received one before any has arrived). The CSI tool logs only received packets, so a frame's ten slots
    always hold measured channels; an all -inf packet would survive the MM-Fi toolbox's per-packet mean fill as
    NaN, and the toolbox never meets one on the real files."""
    index = np.where(lost, -1, np.arange(len(lost)))
    index = np.maximum.accumulate(index)
    received = np.flatnonzero(~lost)
    if not len(received):
        raise RuntimeError("every packet of the sequence was lost: raise SNR or lower LOST_PACKET_RATE")
    return np.where(index < 0, received[0], index)


def csi(performance, times: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CSIamp (dB) and CSIphase (rad), each (frames, 3, 114, 10) float64, for frames starting at ``times``."""
    n = len(times)
    t = (times[:, None] + PACKET_SPACING_S * np.arange(PACKETS)[None]).ravel()
    ends, radii = performance.capsules(*performance.pose(t))
    lengths, amps = _paths(performance.env, ends, radii)
    h = channel(FREQS_HZ, lengths, amps)  # (n*10, 3, 114)
    m = n * PACKETS
    # Receiver impairments.
    cfo = rng.uniform(-np.pi, np.pi, m)[:, None, None]
    sto = rng.normal(0, STO_NS * 1e-9, m)[:, None, None]
    chain = rng.uniform(-np.pi, np.pi, 3)[None, :, None]
    h = h * np.exp(1j * (cfo + chain - 2 * np.pi * SPACING_HZ * SUBCARRIER_INDEX * sto))
    h = h * (FULL_SCALE / np.abs(h).mean() * 10 ** (agc_gain_db(m, rng) / 20))[:, None, None]
    noise_std = FULL_SCALE * 10 ** (-SNR_DB / 20) / np.sqrt(2)
    h = h + noise_std * (rng.normal(size=h.shape) + 1j * rng.normal(size=h.shape))
    h = np.clip(np.round(h.real), -128, 127) + 1j * np.clip(np.round(h.imag), -128, 127)  # 8-bit I/Q
    h = h[held_packets(rng.random(m) < LOST_PACKET_RATE)]
    with np.errstate(divide="ignore"):
        amp = 20 * np.log10(np.abs(h))
    phase = np.angle(h)
    shape = (n, PACKETS, 3, len(FREQS_HZ))
    return (amp.reshape(shape).transpose(0, 2, 3, 1).copy(), phase.reshape(shape).transpose(0, 2, 3, 1).copy())
