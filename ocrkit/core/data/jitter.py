"""Photometric jitter of a whole batch on the model's device (the fused pipeline's second half).

The same four operations as albumentations' ``ColorJitter`` (torchvision's definitions), per
sample with its own factors and order (drawn in the loader, augment.py ``draw_jitter``):

- brightness f: x · f
- contrast f: x · f + m · (1 − f), m the mean grey level of the sample's content
- saturation f: x · f + g · (1 − f), g the pixel's grey level (ITU-R 601: .299 R + .587 G + .114 B)
- hue f: the HSV hue turned by f of a full turn

on float values in [0, 255], each clipped to that range. The CPU chain rounds to uint8 after
every operation; here nothing is rounded, so the two agree to within that rounding (tests hold
each operation to albumentations' own). Only the content is jittered: the padding stays 0.
"""

from __future__ import annotations

import torch

GREY_WEIGHTS = (0.299, 0.587, 0.114)


def _grey(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (GREY_WEIGHTS[0] * r + GREY_WEIGHTS[1] * g + GREY_WEIGHTS[2] * b).unsqueeze(1)


def _per_sample(f: torch.Tensor) -> torch.Tensor:
    return f.view(-1, 1, 1, 1)


def brightness(x: torch.Tensor, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * _per_sample(f)).clamp_(0, 255)


def contrast(x: torch.Tensor, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    area = mask.sum(dim=(1, 2, 3)).clamp_(min=1)
    mean = (_grey(x) * mask).sum(dim=(1, 2, 3)) / area
    f = _per_sample(f)
    return (x * f + _per_sample(mean) * (1 - f)).clamp_(0, 255)


def saturation(x: torch.Tensor, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    f = _per_sample(f)
    return (x * f + _grey(x) * (1 - f)).clamp_(0, 255)


def hue(x: torch.Tensor, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    h, s, v = rgb_to_hsv(x)
    return hsv_to_rgb(torch.remainder(h + _per_sample(f), 1.0), s, v)


OPERATIONS = (brightness, contrast, saturation, hue)  # the order of the factors and of ``order``'s ids


def rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """N×3×H×W RGB in [0, 255] → hue in [0, 1) turns, saturation in [0, 1], value in [0, 255]
    (each N×1×H×W)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    value, _ = x.max(dim=1, keepdim=True)
    low, _ = x.min(dim=1, keepdim=True)
    chroma = value - low
    sat = torch.where(value > 0, chroma / value.clamp(min=1e-12), torch.zeros_like(value))
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    h = torch.where(
        value == r,
        torch.remainder((g - b) / safe, 6.0),
        torch.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    h = torch.where(chroma > 0, h / 6.0, torch.zeros_like(h))
    return torch.remainder(h, 1.0), sat, value


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The inverse of ``rgb_to_hsv``: N×3×H×W RGB in [0, 255]."""
    # the closed form: channel n (R = 5, G = 3, B = 1) is v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + 6h) mod 6
    n = torch.tensor([5.0, 3.0, 1.0], device=h.device, dtype=h.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + h * 6.0, 6.0)
    return v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def content_mask(content: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """N×1×H×W float, 1 inside each sample's content (its top-left ``content`` = (h, w))."""
    content = content.to(device)
    rows = torch.arange(height, device=device).view(1, height, 1) < content[:, 0].view(-1, 1, 1)
    cols = torch.arange(width, device=device).view(1, 1, width) < content[:, 1].view(-1, 1, 1)
    return (rows & cols).unsqueeze(1).float()


def jitter_batch(
    images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, content: torch.Tensor
) -> torch.Tensor:
    """Jitter N×3×H×W float images in [0, 255] (on any device). ``factors`` N×4 (on the images'
    device), ``order`` N×4 and ``content`` N×2 on the CPU: the samples are grouped by operation
    there, so choosing who gets what costs the device no synchronisation."""
    mask = content_mask(content, images.shape[2], images.shape[3], images.device)
    out = images
    for position in range(order.shape[1]):
        for op_id, operation in enumerate(OPERATIONS):
            chosen = (order[:, position] == op_id).nonzero().flatten()
            if len(chosen) == 0:
                continue
            if len(chosen) == len(out):
                out = operation(out, factors[:, op_id], mask)
                continue
            index = chosen.to(images.device)
            part = operation(out.index_select(0, index), factors.index_select(0, index)[:, op_id], mask[index])
            out = out.index_copy(0, index, part)
    return out * mask
