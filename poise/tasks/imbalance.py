"""A controlled-imbalance regression task whose answers are known in closed form (``docs/imbalance.md``).

The design is linear-Gaussian, which is what makes every answer exact:

    y    ~ N(0, I_D)                                   the target, D = ``dim`` coordinates
    z_m  = y[C_m] + sigma_m * eps_m,  eps_m ~ N(0, I)  what modality m knows: the coordinates C_m it sees
                                                       (its information content), with noise sigma_m
    x_m  = A_m z_m + B_m u_m,  u_m ~ N(0, s^2 I)       what the model is given: z_m and ``nuisance[m]``
                                                       dimensions of clutter u_m (sd s = ``nuisance_sd``, independent
                                                       of y) mixed by a fixed random sensor [A_m B_m]
                                                       (``input_dims[m]`` rows) of full column rank

The sensors are drawn from the task's seed and the modality's name only, so every draw (``data(n, seed)``) sees
through the same sensors; a draw's seed changes the samples alone. Since [A_m B_m] has full column rank, z_m is
recovered exactly from x_m (the first |C_m| rows of pinv([A_m B_m]) x_m), and u_m says nothing about y, so the
posterior of y given the modalities S is that of the z_m: per coordinate j

    precision_j(S) = 1 + sum_{m in S, j in C_m} 1 / sigma_m^2
    E[y_j | x_S]   = sum_{m in S, j in C_m} (z_mj / sigma_m^2) / precision_j(S)        (the Bayes estimator)
    Var[y_j | x_S] = 1 / precision_j(S)                                                (its error, per coordinate)

Clutter changes none of these numbers, only how hard a modality is to learn: an encoder must find its signal
among the nuisance dimensions. That is the knob that makes joint training under-learn a modality.

Everything below follows: the Bayes MSE of every subset, the inverse-variance weights (ARL's rule) the optimal
estimator puts on each modality, the Shapley values of the game v(S) = -MSE(S), and the expected Euclidean error.
"""

from __future__ import annotations

import math
import numbers
import zlib

import numpy as np

from poise.errors import PoiseError

# named designs (``ImbalanceTask.preset``): "ranked" shows the closed forms (three modalities, each seeing every
# coordinate, ranked by noise); "weak-cluttered" is an imbalance joint training gets wrong: the weak modality is
# informative (it lowers the Bayes MSE from 0.083 to 0.067) but its signal hides among twice the nuisance
# dimensions of the strong one, and joint training leaves its encoder far from what it learns alone
# (docs/imbalance.md)
PRESETS = {
    "ranked": dict(noise={"precise": 0.2, "medium": 0.5, "coarse": 1.0}, dim=4),
    "weak-cluttered": dict(noise={"strong": 0.3, "weak": 0.6}, dim=4, nuisance={"strong": 8, "weak": 16},
                           input_dims={"strong": 24, "weak": 24}),
}
SENSOR, TARGET, NOISE = 0, 1, 2  # the streams of a task's seed: sensors, and a draw's targets and noises


def _stream(*keys) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


def _name_key(name: str) -> int:
    """A stable number per modality name, so that a modality's sensor and noise do not depend on the others."""
    return zlib.crc32(name.encode())


def _count(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise PoiseError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class ImbalanceTask:
    """Modalities ``noise`` ({name: sigma > 0}), each seeing the coordinates ``sees[name]`` (default: all ``dim``
    of them) of a standard-normal target, with ``nuisance[name]`` clutter dimensions (default 0) of sd
    ``nuisance_sd``, through a fixed random sensor with ``input_dims[name]`` outputs (default twice what it
    mixes). ``seed`` fixes the sensors; ``data(n, seed)`` draws samples; ``preset(name)`` builds a named design."""

    def __init__(self, noise: dict, dim: int = 4, sees: dict | None = None, nuisance: dict | None = None,
                 nuisance_sd: float = 3.0, input_dims: dict | None = None, seed: int = 0):
        if not isinstance(noise, dict) or not noise:
            raise PoiseError("noise must be a non-empty dict {modality name: noise standard deviation sigma > 0}")
        self.dim = _count(dim, "dim (the number of target coordinates)")
        self.seed = _count(seed, "seed", minimum=0)
        self.noise = {}
        for name, sigma in noise.items():
            if not isinstance(name, str) or not name or name == "gt":
                raise PoiseError(f"noise: modality name {name!r}: use a non-empty string other than 'gt'")
            if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not (0 < sigma < math.inf):
                raise PoiseError(f"noise[{name!r}] = {sigma!r}: sigma must be a finite number > 0 (a noiseless "
                                 f"modality would make the Bayes error zero; use a small sigma instead)")
            self.noise[name] = float(sigma)
        self.modalities = tuple(self.noise)
        self.sees = {m: tuple(range(self.dim)) for m in self.modalities}
        for name, coordinates in self._known(sees, "sees").items():
            self.sees[name] = self._coordinates(name, coordinates)
        self.nuisance = {m: 0 for m in self.modalities}
        for name, count in self._known(nuisance, "nuisance").items():
            self.nuisance[name] = _count(count, f"nuisance[{name!r}]", minimum=0)
        if isinstance(nuisance_sd, bool) or not isinstance(nuisance_sd, numbers.Real) or not 0 < nuisance_sd < math.inf:
            raise PoiseError(f"nuisance_sd must be a finite number > 0, got {nuisance_sd!r}")
        self.nuisance_sd = float(nuisance_sd)
        self.input_dims = {m: 2 * self._sources(m) for m in self.modalities}
        for name, size in self._known(input_dims, "input_dims").items():
            self.input_dims[name] = _count(size, f"input_dims[{name!r}]")
            if size < self._sources(name):
                raise PoiseError(f"input_dims[{name!r}] = {size} is below the {self._sources(name)} signal and "
                                 f"nuisance dimensions it mixes: its sensor could not have full column rank, and "
                                 f"the closed forms would not hold; give it at least {self._sources(name)}")
        self.sensors = {m: self._sensor(m) for m in self.modalities}

    @classmethod
    def preset(cls, name: str, seed: int = 0) -> "ImbalanceTask":
        """One of the named designs in ``PRESETS``, its sensors drawn from ``seed``."""
        if name not in PRESETS:
            raise PoiseError(f"unknown ImbalanceTask preset {name!r}: choose one of {', '.join(PRESETS)}")
        return cls(**PRESETS[name], seed=seed)

    def _known(self, mapping, what: str) -> dict:
        if mapping is None:
            return {}
        if not isinstance(mapping, dict):
            raise PoiseError(f"{what} must be a dict keyed by modality name, got {type(mapping).__name__}")
        unknown = [m for m in mapping if m not in self.noise]
        if unknown:
            raise PoiseError(f"{what} names {unknown}, which are not modalities of this task "
                             f"({list(self.modalities)}); give each modality its sigma in noise first")
        return mapping

    def _coordinates(self, name: str, coordinates) -> tuple:
        if isinstance(coordinates, (str, bytes)) or not hasattr(coordinates, "__iter__"):
            raise PoiseError(f"sees[{name!r}] must be a list of target coordinates, got {coordinates!r}")
        chosen = tuple(coordinates)
        if not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in chosen):
            raise PoiseError(f"sees[{name!r}] = {list(chosen)}: coordinates are integers in 0..{self.dim - 1}")
        chosen = tuple(int(c) for c in chosen)
        if not chosen or len(set(chosen)) != len(chosen) or not all(0 <= c < self.dim for c in chosen):
            raise PoiseError(f"sees[{name!r}] = {list(chosen)}: give distinct coordinates in 0..{self.dim - 1}, at "
                             f"least one")
        return tuple(sorted(chosen))

    def _sources(self, name: str) -> int:
        """What modality m's sensor mixes: its |C_m| readings and its nuisance dimensions."""
        return len(self.sees[name]) + self.nuisance[name]

    def _sensor(self, name: str) -> np.ndarray:
        """[A_m B_m]: Gaussian entries of variance 1/(|C_m| + nuisance), from the task's seed and the modality's
        name alone; full column rank, so readings and nuisance are both recovered exactly from x_m."""
        k = self._sources(name)
        sensor = _stream(self.seed, SENSOR, _name_key(name)).standard_normal((self.input_dims[name], k)) / math.sqrt(k)
        if np.linalg.matrix_rank(sensor) < k:  # probability zero; checked because every closed form rests on it
            raise PoiseError(f"the sensor of {name!r} drawn from seed {self.seed} is rank-deficient; choose "
                             f"another seed")
        return sensor

    def __repr__(self) -> str:
        return (f"ImbalanceTask(noise={self.noise}, dim={self.dim}, sees={self.sees}, nuisance={self.nuisance}, "
                f"nuisance_sd={self.nuisance_sd}, input_dims={self.input_dims}, seed={self.seed})")

    # --- samples and a model -------------------------------------------------------------------------------

    def draw(self, n: int, seed: int = 0) -> tuple[dict, np.ndarray]:
        """({modality: x_m (n, input_dims[m])}, y (n, dim)) as float64 arrays: ``n`` independent samples."""
        n = _count(n, "n (the number of samples)")
        seed = _count(seed, "seed", minimum=0)
        y = _stream(self.seed, TARGET, seed).standard_normal((n, self.dim))
        inputs = {}
        for m in self.modalities:
            rng = _stream(self.seed, NOISE, seed, _name_key(m))
            eps = rng.standard_normal((n, len(self.sees[m])))
            clutter = self.nuisance_sd * rng.standard_normal((n, self.nuisance[m]))
            inputs[m] = np.concatenate([y[:, self.sees[m]] + self.noise[m] * eps, clutter], 1) @ self.sensors[m].T
        return inputs, y

    def data(self, n: int, seed: int = 0):
        """``n`` samples as a ``poise.ArrayData`` (float32). Samples are independent, so each is its own group
        (``fit(holdout=...)`` then holds out single samples, which is valid here)."""
        from poise.data.arrays import ArrayData

        inputs, y = self.draw(n, seed)
        return ArrayData({m: x.astype(np.float32) for m, x in inputs.items()}, y.astype(np.float32),
                         groups=np.arange(len(y)))

    def model(self, hidden: int = 32, seed: int = 0, fusion: str = "concat"):
        """A ``poise.MultiModalRegressor`` for this task: per modality an MLP (input -> ``hidden`` -> ReLU ->
        ``hidden`` features), initialised from ``seed``. The Bayes estimator is linear in each x_m, which this
        encoder can represent (a pair relu(v) - relu(-v) passes a linear feature through); what it must learn is
        to undo the sensor, leave out the clutter and weigh the noise."""
        import torch
        from torch import nn

        from poise.models.regressor import MultiModalRegressor

        hidden = _count(hidden, "hidden (the encoder width)")
        torch.manual_seed(_count(seed, "seed", minimum=0))
        encoders = {m: nn.Sequential(nn.Linear(self.input_dims[m], hidden), nn.ReLU(), nn.Linear(hidden, hidden))
                    for m in self.modalities}
        return MultiModalRegressor(encoders, dim=hidden, out_shape=(self.dim,), fusion=fusion)

    # --- the Bayes estimator --------------------------------------------------------------------------------

    def subset(self, subset=None) -> tuple:
        """``subset`` (modality names; None: all of them) checked and in the task's order."""
        if subset is None:
            return self.modalities
        if isinstance(subset, str):
            subset = (subset,)
        names = tuple(subset)
        unknown = [m for m in names if m not in self.noise]
        if unknown:
            raise PoiseError(f"subset names {unknown}, which are not modalities of this task "
                             f"({list(self.modalities)})")
        return tuple(m for m in self.modalities if m in names)

    def readings(self, inputs: dict) -> dict:
        """{modality: z_m (N, |C_m|), the first |C_m| rows of pinv([A_m B_m]) x_m}: each modality's noisy copy of the coordinates it sees,
        unbiased with error variance sigma_m^2, recovered exactly from its inputs."""
        out = {}
        for m, x in inputs.items():
            if m not in self.noise:
                raise PoiseError(f"inputs hold {m!r}, not a modality of this task ({list(self.modalities)})")
            x = np.asarray(x, dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != self.input_dims[m]:
                raise PoiseError(f"inputs[{m!r}] has shape {x.shape}; expected (N, {self.input_dims[m]}), as "
                                 f"draw() and data() give it")
            out[m] = (x @ np.linalg.pinv(self.sensors[m]).T)[:, :len(self.sees[m])]
        return out

    def precision(self, subset=None) -> np.ndarray:
        """(dim,): 1 + sum_{m in S, j in C_m} 1/sigma_m^2, the posterior precision of each coordinate given S."""
        precision = np.ones(self.dim)
        for m in self.subset(subset):
            precision[list(self.sees[m])] += self.noise[m] ** -2
        return precision

    def posterior_mean(self, inputs: dict, subset=None) -> np.ndarray:
        """(N, dim): E[y | x_S] = sum_{m in S, j in C_m} (z_mj / sigma_m^2) / precision_j(S), the Bayes-optimal
        prediction from the modalities in ``subset`` (the prior mean 0 where none of them sees a coordinate)."""
        names = self.subset(subset)
        missing = [m for m in names if m not in inputs]
        if missing:
            raise PoiseError(f"posterior_mean: inputs lack {missing}, which subset {list(names)} uses")
        if not inputs:
            raise PoiseError("posterior_mean: inputs is empty; pass {modality: x_m}, as draw() returns them")
        readings = self.readings({m: inputs[m] for m in names})
        total = np.zeros((len(next(iter(inputs.values()))), self.dim))
        for m, z in readings.items():
            total[:, list(self.sees[m])] += z / self.noise[m] ** 2
        return total / self.precision(names)

    # --- closed forms ---------------------------------------------------------------------------------------

    def bayes_mse(self, subset=None) -> float:
        """The Bayes-optimal mean squared error (over samples and coordinates) from the modalities in ``subset``
        (None: all; () the prior alone, 1):  MSE(S) = (1/D) sum_j 1 / precision_j(S)."""
        return float(np.mean(1 / self.precision(subset)))

    def bayes_mse_stderr(self, n: int, subset=None) -> float:
        """The standard error of the Bayes estimator's MSE measured on ``n`` samples: its residuals are
        N(0, 1/precision_j) and independent, so Var(per-sample MSE) = 2 sum_j precision_j^-2 / D^2."""
        variance = 1 / self.precision(subset)
        return float(math.sqrt(2 * np.sum(variance ** 2)) / self.dim / math.sqrt(_count(n, "n")))

    def bayes_mse_table(self) -> dict:
        """{frozenset(S): MSE(S)} for every subset S of the modalities, the empty one included."""
        import itertools

        return {frozenset(s): self.bayes_mse(s) for k in range(len(self.modalities) + 1)
                for s in itertools.combinations(self.modalities, k)}

    def bayes_l2(self, subset=None) -> float:
        """The Bayes-optimal expected Euclidean error E||y - y_hat|| (``poise.regression()``'s ``l2``): the
        posterior is Gaussian and symmetric about its mean, so the posterior mean minimises it too, and its
        residual r has independent N(0, s_j^2) coordinates, s_j^2 = 1/precision_j. With every s_j = s:
        E||r|| = s sqrt(2) Gamma((D+1)/2) / Gamma(D/2) (the chi distribution's mean); otherwise, from
        sqrt(a) = 1/(2 sqrt(pi)) int_0^inf (1 - e^{-ta}) t^{-3/2} dt and E e^{-t||r||^2} = prod_j
        (1 + 2 t s_j^2)^{-1/2}, the one-dimensional integral evaluated by quadrature."""
        variance = 1 / self.precision(subset)
        if np.allclose(variance, variance[0], rtol=0, atol=0):
            d = self.dim
            return float(math.sqrt(variance[0]) * math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2)))
        from scipy.integrate import quad

        def integrand(u):  # t = e^u: dt t^{-3/2} = e^{-u/2} du
            t = math.exp(u)
            return -math.expm1(-0.5 * float(np.sum(np.log1p(2 * t * variance)))) * math.exp(-u / 2)

        value, _ = quad(integrand, -60, 60, limit=400, epsabs=1e-12, epsrel=1e-10)
        return float(value / (2 * math.sqrt(math.pi)))

    def weights(self, subset=None) -> dict:
        """{modality: (dim,)}: the weight w_mj the Bayes estimator puts on modality m's reading of coordinate j,
        w_mj = (1/sigma_m^2) / sum_{m' in S, j in C_m'} (1/sigma_m'^2) (0 where m does not see j), so that
        E[y_j | x_S] = shrink_j * sum_m w_mj z_mj with shrink_j = 1 - 1/precision_j(S). This is ARL's
        inverse-variance rule: each z_m is an unbiased estimate with error variance sigma_m^2, and the
        combination of least variance weighs each by 1/variance."""
        names = self.subset(subset)
        seen = self.precision(names) - 1
        out = {}
        for m in names:
            w = np.zeros(self.dim)
            cols = list(self.sees[m])
            w[cols] = self.noise[m] ** -2 / seen[cols]
            out[m] = w
        return out

    def dependence(self, subset=None) -> dict:
        """{modality: share}: ARL's dependence d_m (``poise.methods.arl``: the mean |phi_m| of the Shapley split of
        the fused output around decode({})) of the Bayes estimator, normalised to sum to 1. The estimator is
        additive over modalities, so phi_mj = shrink_j w_mj z_mj exactly, and z_mj ~ N(0, 1 + sigma_m^2) gives
        d_m = sqrt(2/pi) mean_j shrink_j w_mj sqrt(1 + sigma_m^2). The share a trained model's dependence
        (``arl_dep_<m>``) would have at the optimum."""
        names = self.subset(subset)
        shrink = 1 - 1 / self.precision(names)
        raw = {m: float(np.mean(shrink * w)) * math.sqrt(1 + self.noise[m] ** 2)
               for m, w in self.weights(names).items()}
        total = sum(raw.values())
        return {m: v / total for m, v in raw.items()} if total else raw

    def shapley(self) -> dict:
        """{modality: phi_m}: exact Shapley values of the game v(S) = -MSE(S) (``poise.contrib.shapley``). They
        sum to v(all) - v({}) = 1 - MSE(all). When every modality sees every coordinate, v depends on S only
        through sum_{m in S} 1/sigma_m^2 and is increasing in it, so phi ranks the modalities by 1/sigma^2."""
        from poise.contrib.shapley import shapley_exact

        table = self.bayes_mse_table()
        return shapley_exact(lambda s: -table[s], self.modalities)

    def ranking(self) -> tuple:
        """The modalities by Shapley value, largest contribution first."""
        phi = self.shapley()
        return tuple(sorted(self.modalities, key=lambda m: -phi[m]))
