"""Low-dose CT simulation in the projection domain (parallel beam), in PyTorch.

Pipeline (:func:`simulate_low_dose`), never Gaussian noise on the image:

1. HU -> linear attenuation ``mu = mu_water * (1 + HU / 1000)`` (``mu_water`` =
   0.0193 /mm, water at about 70 keV; air and below clamp to 0);
2. forward projection (Radon transform) of ``mu`` times the pixel size (mm), so
   the sinogram holds dimensionless line integrals ``p``;
3. detector counts ``N ~ Poisson(I0 * dose * exp(-p))`` (+ optional Gaussian
   electronic noise of standard deviation ``electronic_noise`` counts), clamped
   to at least ``min_counts`` so the log stays finite;
4. ``p_low = -log(N / (I0 * dose))``;
5. filtered back-projection (ramp or Hann-windowed ramp) and back to HU.

The object must sit inside the reconstruction disk: the slice is placed in the
smallest centred disk that holds all of its non-air pixels (or, ``fov="full"``,
the disk around the whole slice, corners included), with zero attenuation outside.

The Radon transform follows scikit-image's ``radon(circle=True)`` conventions
(rotation about pixel ``N // 2``, one detector bin per pixel, bilinear sampling)
and the back-projection those of ``iradon`` (linear interpolation, the Kak &
Slaney spatial-domain ramp filter, zero padding to a power of two), so the two
agree to floating-point error; scikit-image is the reference in the tests. The
work is vectorised over blocks of angles with ``grid_sample``; the per-geometry
pieces (angles, sampling offsets, Fourier filter) are built once and cached.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MU_WATER = 0.0193
"""Linear attenuation of water in 1/mm at about 70 keV (NIST XCOM: 0.193 /cm)."""

DEFAULT_I0 = 2.0e6
"""Default incident photons per detector bin and view at full dose: with 720 views and the ramp
filter, a quarter dose then gives about 55 HU of noise in soft tissue on 1 mm abdominal slices."""

REFERENCE_VIEWS = 720
"""``i0`` counts photons per view of a scan with this many views (the dose is per rotation)."""

AIR_HU = -950.0
"""Pixels at or below this are treated as air when choosing the imaged disk (``fov="auto"``)."""

FILTERS = ("ramp", "hann")


def hu_to_mu(hu: torch.Tensor, mu_water: float = MU_WATER) -> torch.Tensor:
    """Linear attenuation (1/mm) of HU values; values below air clamp to 0."""
    return (mu_water * (1.0 + hu / 1000.0)).clamp_min(0.0)


def mu_to_hu(mu: torch.Tensor, mu_water: float = MU_WATER) -> torch.Tensor:
    """HU of linear attenuation values (1/mm)."""
    return 1000.0 * (mu / mu_water - 1.0)


def _fourier_filter(size: int, name: str, dtype: torch.dtype, cutoff: float = 1.0) -> torch.Tensor:
    """Ramp filter built from its band-limited spatial kernel (Kak & Slaney, Eq. 61), optionally Hann-windowed.

    ``cutoff`` (Hann only) is the frequency where the window reaches zero, as a multiple of the
    Nyquist frequency: 1.0 is the classic Hann filter, lower values are smoother kernels (less
    high-frequency noise, coarser texture), higher ones sharper (towards the ramp), like the
    range of soft-tissue kernels of clinical scanners.
    """
    n = np.concatenate((np.arange(1, size / 2 + 1, 2, dtype=int), np.arange(size / 2 - 1, 0, -2, dtype=int)))
    f = np.zeros(size)
    f[0] = 0.25
    f[1::2] = -1 / (np.pi * n) ** 2
    # sampling the ideal |w| directly would miss its DC offset and bias the mean HU
    filt = 2 * np.real(np.fft.fft(f))
    if name == "hann":
        if not 0 < cutoff <= 16:
            raise ValueError(f"Hann cutoff must be in (0, 16] (multiple of Nyquist), got {cutoff}")
        filt = filt * hann_window(np.fft.fftfreq(size), cutoff)
    elif name != "ramp":
        raise ValueError(f"unknown filter {name!r}; expected one of {FILTERS}")
    return torch.as_tensor(filt, dtype=dtype)


@dataclass(frozen=True)
class ParallelBeam:
    """A parallel-beam geometry on an ``size`` x ``size`` grid with ``n_angles`` views over 180 degrees.

    ``angles_deg`` may be given explicitly instead (as scikit-image's ``theta``).
    The detector has ``size`` bins of one pixel, centred on pixel ``size // 2``.
    """

    size: int
    n_angles: int = 720
    angles_deg: tuple[float, ...] | None = None
    block: int = 32

    @property
    def theta(self) -> np.ndarray:
        if self.angles_deg is not None:
            return np.asarray(self.angles_deg, dtype=np.float64)
        return np.arange(self.n_angles) * 180.0 / self.n_angles

    def project(self, image: torch.Tensor) -> torch.Tensor:
        """Radon transform of ``(B, N, N)`` images -> sinograms ``(B, n_angles, N)`` (sum over unit steps)."""
        return _project(image, _cached(self, image.dtype, str(image.device)))

    def fbp(self, sinogram: torch.Tensor, filter_name: str = "ramp", cutoff: float = 1.0) -> torch.Tensor:
        """Filtered back-projection of ``(B, n_angles, N)`` sinograms -> ``(B, N, N)`` images."""
        return _fbp(sinogram, _cached(self, sinogram.dtype, str(sinogram.device)), filter_name, cutoff)


@dataclass
class _Cache:
    size: int
    cos: torch.Tensor
    sin: torch.Tensor
    offsets: torch.Tensor  # pixel offsets from the rotation centre, (N,)
    block: int
    filters: dict[tuple[str, float], torch.Tensor]
    padded: int
    diagonal: int

    def filter(self, name: str, cutoff: float = 1.0) -> torch.Tensor:
        """The Fourier filter ``name`` (with ``cutoff``, see :func:`_fourier_filter`), built once."""
        key = (name, float(cutoff) if name == "hann" else 1.0)
        if key not in self.filters:
            self.filters[key] = _fourier_filter(self.padded, name, self.cos.dtype, key[1]).to(self.cos.device)
        return self.filters[key]


@functools.lru_cache(maxsize=8)
def _cached(geom: ParallelBeam, dtype: torch.dtype, device: str) -> _Cache:
    theta = torch.as_tensor(np.deg2rad(geom.theta), dtype=torch.float64)
    n = geom.size
    # filter length as scikit-image's iradon(circle=True), which first pads to the diagonal
    diagonal = math.ceil(math.sqrt(2) * n)
    padded = max(64, int(2 ** math.ceil(math.log2(2 * diagonal))))
    offsets = torch.arange(n, dtype=torch.float64) - n // 2
    return _Cache(
        size=n,
        cos=theta.cos().to(dtype=dtype, device=device),
        sin=theta.sin().to(dtype=dtype, device=device),
        offsets=offsets.to(dtype=dtype, device=device),
        block=geom.block,
        filters={},
        padded=padded,
        diagonal=diagonal,
    )


def _rotation_thetas(c: _Cache, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``affine_grid`` matrices for the projection and the back-projection of angles ``start:stop``.

    In pixel units the projection samples input ``x = c + t cos + s sin``, ``y = c - t sin + s cos``
    at detector bin ``t`` and ray step ``s`` (both offsets from the centre ``c = N // 2``, as
    scikit-image rotates); in grid_sample's normalised coordinates (align_corners) the
    centre sits at ``k - 1`` with ``k = 2c / (N - 1)``, hence the constant terms.
    """
    n = c.size
    cos, sin = c.cos[start:stop], c.sin[start:stop]
    k1 = 2.0 * (n // 2) / (n - 1) - 1.0
    zero = torch.zeros_like(cos)
    proj = torch.stack(
        (
            torch.stack((cos, sin, k1 * (1 - cos - sin)), dim=-1),
            torch.stack((-sin, cos, k1 * (1 + sin - cos)), dim=-1),
        ),
        dim=1,
    )
    # back-projection: detector coordinate t = (col - c) cos - (row - c) sin of every pixel, on the
    # detector extended to the diagonal (length D, centre D // 2) that keeps the filtered tails
    d, m = c.diagonal, (n - 1) / 2.0
    scale = (n - 1) / (d - 1)
    const = 2.0 / (d - 1) * ((m - n // 2) * (cos - sin) + d // 2) - 1.0
    back = torch.stack(
        (torch.stack((scale * cos, -scale * sin, const), dim=-1), torch.stack((zero, zero, zero), dim=-1)),
        dim=1,
    )
    return proj, back


def _project(image: torch.Tensor, c: _Cache) -> torch.Tensor:
    b, n = image.shape[0], c.size
    if image.shape[-2:] != (n, n):
        raise ValueError(f"expected ({n}, {n}) images, got {tuple(image.shape[-2:])}")
    src = image.unsqueeze(0)  # (1, B, N, N): the batch rides in the channels, angles in the batch
    out = []
    for start in range(0, c.cos.numel(), c.block):
        theta, _ = _rotation_thetas(c, start, start + c.block)
        a = theta.shape[0]
        grid = F.affine_grid(theta, [a, b, n, n], align_corners=True)
        rot = F.grid_sample(src.expand(a, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True)
        out.append(rot.sum(dim=2))  # (A, B, N): sum along each ray
    return torch.cat(out, dim=0).permute(1, 0, 2).contiguous()


def _fbp(sinogram: torch.Tensor, c: _Cache, filter_name: str, cutoff: float = 1.0) -> torch.Tensor:
    b, n_ang, n = sinogram.shape
    if n != c.size or n_ang != c.cos.numel():
        raise ValueError(f"sinogram {tuple(sinogram.shape[1:])} does not fit the geometry ({c.cos.numel()}, {c.size})")
    if filter_name not in FILTERS:
        raise ValueError(f"unknown filter {filter_name!r}; expected one of {FILTERS}")
    spec = torch.fft.fft(sinogram, n=c.padded, dim=-1) * c.filter(filter_name, cutoff)
    filtered = torch.fft.ifft(spec, dim=-1).real
    # the ramp spreads each projection beyond its support: keep those tails (detector length D)
    before = c.diagonal // 2 - n // 2
    filtered = torch.roll(filtered, before, dims=-1)[..., : c.diagonal]
    src = filtered.permute(1, 0, 2).unsqueeze(2).contiguous()  # (A, B, 1, D): one detector row per angle
    recon = sinogram.new_zeros(b, n, n)
    for start in range(0, n_ang, c.block):
        _, theta = _rotation_thetas(c, start, start + c.block)
        a = theta.shape[0]
        grid = F.affine_grid(theta, [a, b, n, n], align_corners=True)
        vals = F.grid_sample(src[start : start + a], grid, mode="bilinear", padding_mode="zeros",
                             align_corners=True)
        recon += vals.sum(dim=0)
    return recon * (math.pi / (2 * n_ang))


def radon(image: np.ndarray | torch.Tensor, n_angles: int = 180, angles_deg: np.ndarray | None = None) -> torch.Tensor:
    """Radon transform of one ``(N, N)`` image or a ``(B, N, N)`` batch (rows: angles, columns: detector bins).

    The transpose of scikit-image's ``radon(image, theta, circle=True)`` layout.
    """
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    single = x.ndim == 2
    x = x[None] if single else x
    geom = _geometry(x.shape[-1], n_angles, angles_deg)
    sino = geom.project(x)
    return sino[0] if single else sino


def fbp(sinogram: np.ndarray | torch.Tensor, filter_name: str = "ramp", angles_deg: np.ndarray | None = None
        ) -> torch.Tensor:
    """Filtered back-projection of ``(A, N)`` or ``(B, A, N)`` sinograms over 180 degrees."""
    s = torch.as_tensor(np.asarray(sinogram) if not isinstance(sinogram, torch.Tensor) else sinogram)
    single = s.ndim == 2
    s = s[None] if single else s
    geom = _geometry(s.shape[-1], s.shape[-2], angles_deg)
    img = geom.fbp(s, filter_name)
    return img[0] if single else img


def _geometry(size: int, n_angles: int, angles_deg: np.ndarray | None) -> ParallelBeam:
    if angles_deg is not None:
        return ParallelBeam(size, len(angles_deg), tuple(float(a) for a in np.asarray(angles_deg)))
    return ParallelBeam(size, n_angles)


def _as_batch(hu: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    x = torch.as_tensor(np.asarray(hu, dtype=np.float32) if not isinstance(hu, torch.Tensor) else hu)
    x = x.detach().to(torch.float32).cpu()
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected an (H, W) slice or a (B, H, W) batch, got shape {tuple(x.shape)}")
    return x, single


@dataclass
class _Scan:
    """A batch of slices placed in the reconstruction disk, projected, with the counting noise drawn."""

    x: torch.Tensor          # (B, H, W) input HU
    big: torch.Tensor        # the slices embedded in an air canvas that holds the disk
    window: tuple[int, int, int, int]  # oy, ox (slices in big), top, left (disk square in big)
    geom: ParallelBeam
    p: torch.Tensor          # noiseless line integrals
    p_low: torch.Tensor      # line integrals from the counts
    inside: torch.Tensor     # (H, W) pixels inside the reconstructed disk

    def reconstruct(self, sinogram: torch.Tensor, pixel_size_mm: float, mu_water: float, filter_name: str,
                    cutoff: float, *, offset_hu: bool = True) -> torch.Tensor:
        """FBP of ``sinogram`` on the slices' grid: HU (``offset_hu``) or an HU difference (noise only)."""
        oy, ox, top, left = self.window
        size = self.geom.size
        h, w = self.x.shape[-2:]
        mu = self.geom.fbp(sinogram, filter_name, cutoff) / pixel_size_mm
        canvas = self.big.clone() if offset_hu else torch.zeros_like(self.big)
        canvas[:, top : top + size, left : left + size] = mu_to_hu(mu, mu_water) if offset_hu else 1000.0 * mu / mu_water
        rec = canvas[:, oy : oy + h, ox : ox + w]
        return torch.where(self.inside, rec, self.x if offset_hu else torch.zeros_like(rec))


def _scan(hu: np.ndarray | torch.Tensor, dose: float, *, i0: float, electronic_noise: float, pixel_size_mm: float,
          n_angles: int | None, mu_water: float, min_counts: float, seed: int | None,
          generator: torch.Generator | None, noiseless: bool, fov: str) -> tuple[_Scan, bool]:
    if not 0 < dose <= 1e6:
        raise ValueError(f"dose fraction must be positive, got {dose}")
    if i0 <= 0:
        raise ValueError(f"incident flux i0 must be positive, got {i0}")
    if pixel_size_mm <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size_mm}")
    x, single = _as_batch(hu)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("the slice holds NaN or infinite values")
    if generator is None:
        generator = torch.Generator()
        generator.manual_seed(int(seed) if seed is not None else int(torch.seed() % (2**63)))
    _, h, w = x.shape
    # the object must lie inside the reconstruction disk: the circumscribing disk of the whole
    # slice, or (fov="auto") the smallest centred disk holding every non-air pixel, which is
    # 2-3x cheaper on body slices; pixels outside it are air and keep their values
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = torch.meshgrid(torch.arange(h) - cy, torch.arange(w) - cx, indexing="ij")
    radius2 = yy**2 + xx**2
    if fov == "auto":
        solid = (x > AIR_HU).any(dim=0)
        reach = float(radius2[solid].max().sqrt()) if bool(solid.any()) else 4.0
    elif fov == "full":
        reach = float(radius2.max().sqrt())
    else:
        raise ValueError(f"fov must be 'auto' or 'full', got {fov!r}")
    size = 2 * math.ceil(reach) + 4
    big = torch.full((x.shape[0], max(size, h) + 2, max(size, w) + 2), -1000.0)
    oy, ox = (big.shape[1] - h) // 2, (big.shape[2] - w) // 2
    big[:, oy : oy + h, ox : ox + w] = x
    # crop the size x size square centred on the slice centre (beyond it: air by construction)
    ccy, ccx = oy + cy, ox + cx
    top, left = round(ccy - (size - 1) / 2.0), round(ccx - (size - 1) / 2.0)
    mu = hu_to_mu(big[:, top : top + size, left : left + size], mu_water) * pixel_size_mm
    if n_angles is None:
        n_angles = max(90, 8 * math.ceil(math.pi / 2 * size / 8))
    geom = ParallelBeam(size, n_angles)
    p = geom.project(mu)
    flux = i0 * dose * REFERENCE_VIEWS / n_angles
    if noiseless:
        p_low = p
    else:
        counts = torch.poisson(flux * torch.exp(-p), generator=generator)
        if electronic_noise > 0:
            counts = counts + electronic_noise * torch.randn(counts.shape, generator=generator)
        p_low = -torch.log(counts.clamp_min(min_counts) / flux)
    inside = radius2 <= (size / 2.0 - 2) ** 2
    return _Scan(x, big, (oy, ox, top, left), geom, p, p_low, inside), single


def simulate_low_dose(
    hu: np.ndarray | torch.Tensor,
    dose: float = 0.25,
    *,
    i0: float = DEFAULT_I0,
    electronic_noise: float = 0.0,
    pixel_size_mm: float = 1.0,
    n_angles: int | None = None,
    filter_name: str = "ramp",
    cutoff: float = 1.0,
    mu_water: float = MU_WATER,
    min_counts: float = 1.0,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    noiseless: bool = False,
    fov: str = "auto",
) -> np.ndarray:
    """A low-dose version of normal-dose HU slice(s) ``(H, W)`` or ``(B, H, W)`` (see the module docstring).

    ``dose`` is the fraction of the normal dose: the incident flux is ``i0 * dose`` photons per
    detector bin and view of a :data:`REFERENCE_VIEWS`-view scan. ``n_angles`` (default: about
    pi/2 x the imaged diameter in pixels, the angular sampling FBP needs) changes the views but
    not the photons per rotation, so the noise level does not depend on it. ``pixel_size_mm`` converts attenuation per mm into per-pixel line
    integrals, so give the slice's real spacing: noise depends on the physical path length.
    ``filter_name`` / ``cutoff``: the reconstruction kernel (``"ramp"``, or ``"hann"`` reaching
    zero at ``cutoff`` x Nyquist; smaller is smoother, larger sharper).
    The result is float32 HU with the input's shape. ``seed`` (or ``generator``) makes it repeatable.
    ``fov="auto"`` images the smallest centred disk holding all non-air pixels (above
    :data:`AIR_HU`), ``"full"`` the disk around the whole slice.
    ``noiseless=True`` skips the counting statistics: what is left is the error of the
    projection / reconstruction chain alone.

    The whole slice is reconstructed, so the result also carries the chain's discretisation
    error (about 16 HU on 1 mm abdominal slices). :func:`simulate_noise` gives the noise alone,
    to add to the normal-dose slice, as the AAPM/Mayo challenge made its quarter-dose scans.

    >>> import numpy as np
    >>> water = np.zeros((32, 32), np.float32)
    >>> low = simulate_low_dose(water, dose=0.25, n_angles=48, seed=0)
    >>> low.shape, bool(abs(low.mean()) < 30)
    ((32, 32), True)
    """
    scan, single = _scan(hu, dose, i0=i0, electronic_noise=electronic_noise, pixel_size_mm=pixel_size_mm,
                         n_angles=n_angles, mu_water=mu_water, min_counts=min_counts, seed=seed,
                         generator=generator, noiseless=noiseless, fov=fov)
    out = scan.reconstruct(scan.p_low, pixel_size_mm, mu_water, filter_name, cutoff).numpy().astype(np.float32)
    return out[0] if single else out


def simulate_noise(
    hu: np.ndarray | torch.Tensor,
    dose: float = 0.25,
    *,
    i0: float = DEFAULT_I0,
    electronic_noise: float = 0.0,
    pixel_size_mm: float = 1.0,
    n_angles: int | None = None,
    kernels: tuple[tuple[str, float], ...] = (("ramp", 1.0),),
    mu_water: float = MU_WATER,
    min_counts: float = 1.0,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    fov: str = "auto",
) -> np.ndarray:
    """The low-dose noise of slice(s) ``hu`` alone, in HU: ``FBP(p_low) - FBP(p)``, one image per kernel.

    Projection-domain noise insertion: ``hu + simulate_noise(hu, ...)[k]`` is a low-dose scan
    of ``hu`` reconstructed with kernel ``k`` that keeps ``hu``'s own resolution and texture
    (no reconstruction-chain error is added). The counts are drawn once and every kernel
    (``(filter_name, cutoff)`` pairs, see :func:`simulate_low_dose`) reconstructs the same
    noise, so kernels can be compared on one realisation. The noise of a dose ``d`` is close to
    this one scaled by ``sqrt(dose / d)`` where counts are not starved (FBP is linear and the
    log-count noise has variance ``1 / counts``). Returns ``(K, H, W)`` for one slice or
    ``(K, B, H, W)`` for a batch, float32.

    >>> import numpy as np
    >>> n = simulate_noise(np.zeros((32, 32), np.float32), n_angles=48, seed=0, kernels=(("ramp", 1.0), ("hann", 0.5)))
    >>> n.shape, bool(n[1].std() < n[0].std())
    ((2, 32, 32), True)
    """
    if not kernels:
        raise ValueError("give at least one (filter_name, cutoff) kernel")
    scan, single = _scan(hu, dose, i0=i0, electronic_noise=electronic_noise, pixel_size_mm=pixel_size_mm,
                         n_angles=n_angles, mu_water=mu_water, min_counts=min_counts, seed=seed,
                         generator=generator, noiseless=False, fov=fov)
    diff = scan.p_low - scan.p
    out = np.stack([scan.reconstruct(diff, pixel_size_mm, mu_water, name, cut, offset_hu=False).numpy()
                    for name, cut in kernels]).astype(np.float32)
    return out[:, 0] if single else out


def hann_window(freq: np.ndarray, cutoff: float) -> np.ndarray:
    """The Hann apodisation of :func:`_fourier_filter` at ``freq`` (cycles/sample, |freq| <= 0.5)."""
    r = np.abs(freq) / (0.5 * cutoff)
    return np.where(r < 1, 0.5 * (1 + np.cos(np.pi * np.minimum(r, 1.0))), 0.0)


def apply_kernel(image: np.ndarray, cutoff: float, pad: int = 16) -> np.ndarray:
    """A ramp-filtered reconstruction ``image`` (H, W) as if reconstructed with the Hann(``cutoff``) kernel.

    By the Fourier slice theorem, windowing every projection's spectrum with ``W(|f|)`` before
    back-projection equals filtering the image with the radially symmetric ``W(|f|)`` (``f`` in
    cycles per pixel = per detector bin): one 2-D FFT instead of a new FBP. Used to give
    simulated ramp noise other kernels' textures for free (training data); it agrees with a
    full reconstruction with that kernel up to the discretisation of the back-projection.
    ``pad`` pixels of reflection keep the borders from wrapping round.
    """
    x = np.pad(np.asarray(image, dtype=np.float64), pad, mode="reflect") if pad else np.asarray(image, np.float64)
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.rfftfreq(x.shape[1])[None, :]
    w = hann_window(np.hypot(fy, fx), cutoff)
    out = np.fft.irfft2(np.fft.rfft2(x) * w, s=x.shape)
    if pad:
        out = out[pad:-pad, pad:-pad]
    return out.astype(np.float32)


PHANTOM_SPACING_MM = 0.9765625
"""Pixel size of :func:`abdomen_phantom` (the held-out series' grid)."""

#: (centre y, centre x, semi-axis y, semi-axis x) in mm from the slice centre, HU; later ones paint over earlier ones
_ABDOMEN = (
    ((0.0, 0.0, 120.0, 165.0), -100.0),    # subcutaneous fat
    ((0.0, 0.0, 108.0, 152.0), 40.0),      # soft tissue
    ((-15.0, -60.0, 60.0, 65.0), 60.0),    # liver (patient right = image left)
    ((-20.0, -75.0, 10.0, 10.0), 20.0),    # low-contrast liver lesion
    ((-25.0, 70.0, 35.0, 40.0), 30.0),     # spleen / bowel
    ((35.0, -70.0, 25.0, 17.0), 30.0),     # kidneys
    ((35.0, 70.0, 25.0, 17.0), 30.0),
    ((25.0, 20.0, 12.0, 12.0), 150.0),     # aorta (contrast)
    ((65.0, 0.0, 22.0, 22.0), 700.0),      # vertebral body
    ((65.0, 0.0, 13.0, 13.0), 200.0),      # cancellous bone
    ((-55.0, 20.0, 15.0, 25.0), -1000.0),  # bowel gas
)


def abdomen_phantom(size: int = 384, spacing_mm: float = PHANTOM_SPACING_MM, supersample: int = 4) -> np.ndarray:
    """A synthetic abdominal slice in HU, ``(size, size)`` float32: air outside a 330 x 240 mm body
    (40 HU) in a fat rim (-100), with liver (60) and a 20 HU lesion, spleen, kidneys, contrast
    aorta (150), vertebra (700) and bowel gas.

    Sizes are in mm, so ``spacing_mm`` sets the pixel grid (default: 375 mm over 384 pixels);
    each pixel averages ``supersample``² sub-pixels (partial-volume edges, as a scanner sees
    them). Used to check denoisers without patient data (``tests/test_bundled.py``,
    ``scripts/bundle_model.py``).
    """
    n = size * supersample
    c = (n - 1) / 2.0
    yy, xx = (np.mgrid[:n, :n] - c) * (spacing_mm / supersample)
    hu = np.full((n, n), -1000.0, np.float32)
    for (cy, cx, ay, ax), value in _ABDOMEN:
        hu[((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1.0] = value
    return hu.reshape(size, supersample, size, supersample).mean(axis=(1, 3)).astype(np.float32)
