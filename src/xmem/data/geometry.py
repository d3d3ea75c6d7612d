"""Geometric warps shared by the datasets: affine maps, thin-plate splines and one resampling step.

Coordinates are continuous pixel coordinates (x right, y down; pixel (i, j) covers [j, j+1) × [i, i+1),
its centre at (j + 0.5, i + 0.5)). A warp is given backwards, as the map from output pixels to input
pixels, so that the image and its mask are resampled with exactly the same grid: bilinear for images,
nearest for masks.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def crop_to_output(
    box: tuple[float, float, float, float], out_size: tuple[int, int], *, flip: bool = False
) -> np.ndarray:
    """Map output pixels of an ``out_size`` (h, w) image onto the input ``box`` (x0, y0, width, height),
    mirrored left-right when ``flip``: a resized crop, as a 3×3 output → input matrix."""
    x0, y0, bw, bh = box
    h, w = out_size
    sx, sy = bw / w, bh / h
    if flip:
        return np.array([[-sx, 0.0, x0 + bw], [0.0, sy, y0], [0.0, 0.0, 1.0]])
    return np.array([[sx, 0.0, x0], [0.0, sy, y0], [0.0, 0.0, 1.0]])


def centred_affine(
    out_size: tuple[int, int], *, angle: float = 0.0, shear: float = 0.0, scale: float = 1.0
) -> np.ndarray:
    """The forward affine map of a rotation by ``angle`` degrees, a horizontal shear by ``shear``
    degrees and a zoom by ``scale``, about the centre of an (h, w) image (torchvision's RandomAffine
    without translation). Invert it to resample."""
    h, w = out_size
    a, s = math.radians(angle), math.radians(shear)
    rotate = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    shear_m = np.array([[1.0, math.tan(s), 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    zoom = np.diag([scale, scale, 1.0])
    return translation(w / 2, h / 2) @ rotate @ shear_m @ zoom @ translation(-w / 2, -h / 2)


def pixel_centres(out_size: tuple[int, int]) -> torch.Tensor:
    """h×w×2 (x, y) coordinates of the pixel centres of an (h, w) image."""
    h, w = out_size
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


# --- thin-plate splines ---------------------------------------------------------------------------


def _tps_kernel(r2: torch.Tensor) -> torch.Tensor:
    # U(r) = r² log r², with U(0) = 0.
    return torch.where(r2 > 0, r2 * torch.log(r2.clamp_min(1e-30)), torch.zeros_like(r2))


class ThinPlateSpline:
    """The 2-D thin-plate spline f with f(centres[i]) = targets[i] that minimises the bending energy:
    f(p) = a₀ + A p + Σᵢ wᵢ U(|p − centresᵢ|). ``centres`` and ``targets`` are n×2 (n ≥ 3, not all on
    one line)."""

    def __init__(self, centres: torch.Tensor, targets: torch.Tensor) -> None:
        c = centres.double()
        n = c.shape[0]
        if n < 3 or targets.shape != centres.shape:
            raise ValueError("a thin-plate spline needs n ≥ 3 centres and as many targets (n×2)")
        kernel = _tps_kernel(torch.cdist(c, c).square())  # n×n
        poly = torch.cat([torch.ones(n, 1, dtype=torch.float64), c], dim=1)  # n×3
        system = torch.zeros(n + 3, n + 3, dtype=torch.float64)
        system[:n, :n] = kernel
        system[:n, n:] = poly
        system[n:, :n] = poly.T
        rhs = torch.zeros(n + 3, 2, dtype=torch.float64)
        rhs[:n] = targets.double()
        solution = torch.linalg.solve(system, rhs)
        self.centres = c
        self.weights = solution[:n]  # n×2
        self.affine = solution[n:]  # 3×2: a₀ then A

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """f at ``points`` (…×2)."""
        shape = points.shape
        p = points.reshape(-1, 2).double()
        kernel = _tps_kernel(torch.cdist(p, self.centres).square())  # N×n
        out = kernel @ self.weights + self.affine[0] + p @ self.affine[1:]
        return out.to(points.dtype).reshape(shape)


def random_tps_offsets(
    rng: np.random.Generator, out_size: tuple[int, int], *, num_points: int, sigma: float
) -> torch.Tensor:
    """h×w×2 pixel offsets of a random thin-plate-spline warp: ``num_points`` control points placed
    uniformly in the image move by normal steps of ``sigma`` (a fraction of the image size). The offsets
    are exact at a grid of 1/8 resolution and bilinearly interpolated between (the spline is smooth)."""
    h, w = out_size
    centres = torch.from_numpy(rng.random((num_points, 2)))  # normalised (x, y) in [0, 1]
    moved = centres + torch.from_numpy(rng.normal(scale=sigma, size=(num_points, 2)))
    spline = ThinPlateSpline(centres, moved)
    gh, gw = max(2, math.ceil(h / 8) + 1), max(2, math.ceil(w / 8) + 1)
    ys = torch.linspace(0, 1, gh, dtype=torch.float64)
    xs = torch.linspace(0, 1, gw, dtype=torch.float64)
    coarse = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # gh×gw×2
    offsets = (spline(coarse) - coarse).float().permute(2, 0, 1).unsqueeze(0)  # 1×2×gh×gw
    fine = F.interpolate(offsets, size=(h, w), mode="bilinear", align_corners=True)[0]  # 2×h×w
    return fine.permute(1, 2, 0) * torch.tensor([w, h], dtype=torch.float32)


# --- resampling -----------------------------------------------------------------------------------


def sampling_grid(
    matrix: np.ndarray,
    out_size: tuple[int, int],
    in_size: tuple[int, int],
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """1×h×w×2 ``grid_sample`` grid (align_corners=False) that reads, for each output pixel centre p,
    the input at ``matrix`` · (p + offsets[p]). ``matrix``: 3×3 output → input pixel map; ``offsets``:
    optional h×w×2 pixel offsets applied in output space first (e.g. a thin-plate spline)."""
    in_h, in_w = in_size
    h, w = out_size
    m = np.asarray(matrix, dtype=np.float64)
    if offsets is None:
        # The whole map is affine: let affine_grid build it, in normalised coordinates.
        to_norm_in = np.array([[2.0 / in_w, 0.0, -1.0], [0.0, 2.0 / in_h, -1.0], [0.0, 0.0, 1.0]])
        from_norm_out = np.array([[w / 2.0, 0.0, w / 2.0], [0.0, h / 2.0, h / 2.0], [0.0, 0.0, 1.0]])
        theta = torch.from_numpy(to_norm_in @ m @ from_norm_out)[:2].float()
        return F.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    points = pixel_centres(out_size) + offsets
    mt = torch.from_numpy(m).float()
    mapped = points @ mt[:2, :2].T + mt[:2, 2]  # h×w×2 input pixel coordinates
    scale = torch.tensor([2.0 / in_w, 2.0 / in_h])
    return (mapped * scale - 1.0).unsqueeze(0)


def warp_image(
    image: torch.Tensor, grid: torch.Tensor, fill: tuple[float, ...] | None = None
) -> torch.Tensor:
    """Resample a C×H×W float image bilinearly at ``grid``; outside the input, ``fill`` (one value per
    channel; zeros when None)."""
    if fill is None:
        return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    ones = torch.ones_like(image[:1])
    out = F.grid_sample(
        torch.cat([image, ones])[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )[0]
    colour, coverage = out[:-1], out[-1:]
    fill_t = torch.tensor(fill, dtype=image.dtype).view(-1, 1, 1)
    return colour + (1.0 - coverage) * fill_t


def warp_mask(mask: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Resample an H×W integer index mask (ids < 2²⁴) with nearest neighbours at ``grid``; outside the
    input, background (0)."""
    out = F.grid_sample(
        mask[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )[0, 0]
    return out.round().to(mask.dtype)
