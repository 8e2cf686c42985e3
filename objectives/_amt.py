"""AMT-S, the frame interpolator of VBench's motion_smoothness (Li et al., "AMT: All-Pairs Multi-Field
Transforms for Efficient Frame Interpolation", CVPR 2023), for inference at one time step.

No maintained library ships AMT, so the network is written here, small and plain: its module names and
shapes are those of the published ``amt-s.pth`` (``state_dict`` entry), so the checkpoint loads strictly.
The arithmetic follows the authors' code as VBench vendors it (``vbench/third_party/amt``, network
``networks.AMT-S.Model`` with ``corr_radius=3, corr_lvls=4, num_flows=3``), at ``scale_factor=1`` (VBench
never rescales on a CPU, nor on a GPU with enough memory for the clip).

Shapes: ``[B, 3, H, W]`` images in 0..1 with ``H, W`` multiples of 16; flows are in pixels, channel 0 = x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = (20, 32, 44, 56)  # the context pyramid, 1/2 .. 1/16 resolution
SKIP = 20  # channels a ResBlock refines separately
NUM_FLOWS = 3
CORR_RADIUS, CORR_LEVELS = 3, 4


def _upsample(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def _conv_prelu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.PReLU(cout))


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` at ``x + flow(x)`` (bilinear, border-clamped, corners aligned): AMT's ``warp``."""
    b, _, h, w = flow.shape
    # The base grid is made on the CPU and moved, as the authors' code does (a device linspace may round otherwise).
    xs = torch.linspace(-1.0, 1.0, w).view(1, 1, w).expand(b, h, w).to(image)
    ys = torch.linspace(-1.0, 1.0, h).view(1, h, 1).expand(b, h, w).to(image)
    grid = torch.stack((xs + flow[:, 0] / ((w - 1.0) / 2.0), ys + flow[:, 1] / ((h - 1.0) / 2.0)), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


# --- the correlation encoder (RAFT's small encoder with bottleneck blocks and instance norm) -------------

class _Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        mid = cout // 4
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.norm1, self.norm2, self.norm3 = nn.InstanceNorm2d(mid), nn.InstanceNorm2d(mid), nn.InstanceNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.InstanceNorm2d(cout)) if stride != 1 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = F.relu(self.norm3(self.conv3(y)))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class _CorrelationEncoder(nn.Module):
    """Features at 1/8 resolution for the all-pairs correlation."""

    def __init__(self, out_dim: int = 84) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 3)
        self.norm1 = nn.InstanceNorm2d(32)
        layers, cin = [], 32
        for cout, stride in ((32, 1), (64, 2), (96, 2)):
            layers.append(nn.Sequential(_Bottleneck(cin, cout, stride), _Bottleneck(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3 = layers
        self.conv2 = nn.Conv2d(96, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class _BidirectionalCorrelation:
    """All-pairs correlation of two feature maps, pooled into a pyramid, looked up both ways."""

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor) -> None:
        b, c, h, w = fmap0.shape
        corr = fmap0.flatten(2).transpose(1, 2) @ fmap1.flatten(2) / torch.sqrt(torch.tensor(c).float())
        corr = corr.view(b, h, w, 1, h, w)
        forward = corr.reshape(b * h * w, 1, h, w)  # for each pixel of 0, its scores over 1
        backward = corr.permute(0, 4, 5, 3, 1, 2).reshape(b * h * w, 1, h, w)  # and of 1 over 0
        self.pyramids = ([forward], [backward])
        for _ in range(CORR_LEVELS - 1):
            for pyramid in self.pyramids:
                pyramid.append(F.avg_pool2d(pyramid[-1], 2, stride=2))

    @staticmethod
    def _lookup(pyramid: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
        b, _, h, w = coords.shape
        r = CORR_RADIUS
        offsets = torch.linspace(-r, r, 2 * r + 1, device=coords.device)
        # (dy, dx) pairs ordered dy-major, added to (x, y) coordinates: the authors' neighbourhood order.
        delta = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
        centres = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
        out = []
        for level, corr in enumerate(pyramid):
            points = centres / 2**level + delta
            height, width = corr.shape[-2:]
            grid = torch.cat((2 * points[..., :1] / (width - 1) - 1, 2 * points[..., 1:] / (height - 1) - 1), dim=-1)
            out.append(F.grid_sample(corr, grid, align_corners=True).view(b, h, w, -1))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()

    def __call__(self, coords0: torch.Tensor, coords1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._lookup(self.pyramids[0], coords0), self._lookup(self.pyramids[1], coords1)


# --- the context pyramid and the decoders (IFRNet-style) ---------------------------------------------------

class _ResBlock(nn.Module):
    """Residual block whose last ``side`` channels get an extra convolution twice."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.conv1 = _conv_prelu(channels, channels)
        self.conv2 = _conv_prelu(side, side)
        self.conv3 = _conv_prelu(channels, channels)
        self.conv4 = _conv_prelu(side, side)
        self.conv5 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.prelu = nn.PReLU(channels)

    def _refine_side(self, x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
        return torch.cat((x[:, : -self.side], conv(x[:, -self.side :])), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._refine_side(self.conv1(x), self.conv2)
        out = self._refine_side(self.conv3(out), self.conv4)
        return self.prelu(x + self.conv5(out))


class _Pyramid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        cin = 3
        for level, cout in enumerate(CHANNELS, 1):
            self.add_module(f"pyramid{level}", nn.Sequential(_conv_prelu(cin, cout, 3, 2), _conv_prelu(cout, cout)))
            cin = cout

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for level in range(1, len(CHANNELS) + 1):
            x = getattr(self, f"pyramid{level}")(x)
            features.append(x)
        return features


class _InitialDecoder(nn.Module):
    """1/16 features of both frames and the time step -> flows t->0, t->1 and features at 1/8."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(_conv_prelu(2 * cin + 1, 2 * cin), _ResBlock(2 * cin, SKIP),
                                       nn.ConvTranspose2d(2 * cin, cout + 4, 4, 2, 1))

    def forward(self, f0: torch.Tensor, f1: torch.Tensor, embt: torch.Tensor):
        out = self.convblock(torch.cat((f0, f1, embt.expand(f0.shape[0], 1, *f0.shape[2:])), dim=1))
        return out[:, 0:2], out[:, 2:4], out[:, 4:]


class _IntermediateDecoder(nn.Module):
    """Refines the flows with the frames' features warped along them, one scale up."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(_conv_prelu(3 * cin + 4, 3 * cin), _ResBlock(3 * cin, SKIP),
                                       nn.ConvTranspose2d(3 * cin, cout + 4, 4, 2, 1))

    def forward(self, ft, f0, f1, flow0, flow1):
        out = self.convblock(torch.cat((ft, backward_warp(f0, flow0), backward_warp(f1, flow1), flow0, flow1), 1))
        return out[:, 0:2] + 2.0 * _upsample(flow0, 2.0), out[:, 2:4] + 2.0 * _upsample(flow1, 2.0), out[:, 4:]


class _MultiFlowDecoder(nn.Module):
    """Last decoder: ``NUM_FLOWS`` flow pairs, blending masks and residual images at full resolution."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(_conv_prelu(3 * cin + 4, 3 * cin), _ResBlock(3 * cin, SKIP),
                                       nn.ConvTranspose2d(3 * cin, 8 * NUM_FLOWS, 4, 2, 1))

    def forward(self, ft, f0, f1, flow0, flow1):
        n = NUM_FLOWS
        out = self.convblock(torch.cat((ft, backward_warp(f0, flow0), backward_warp(f1, flow1), flow0, flow1), 1))
        delta0, delta1, mask, residual = torch.split(out, [2 * n, 2 * n, n, 3 * n], dim=1)
        flow0 = delta0 + 2.0 * _upsample(flow0, 2.0).repeat(1, n, 1, 1)
        flow1 = delta1 + 2.0 * _upsample(flow1, 2.0).repeat(1, n, 1, 1)
        return flow0, flow1, torch.sigmoid(mask), residual


class _UpdateBlock(nn.Module):
    """Residual update of the intermediate features and both flows from the correlation lookup."""

    def __init__(self, feature_dim: int, scale: int | None) -> None:
        super().__init__()
        hidden, flow_dim, corr_dim, fc_dim = 76, 20, 64, 68
        self.scale = scale
        self.convc1 = nn.Conv2d(2 * CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2, corr_dim, 1)
        self.convf1 = nn.Conv2d(4, 2 * flow_dim, 7, padding=3)
        self.convf2 = nn.Conv2d(2 * flow_dim, flow_dim, 3, padding=1)
        self.conv = nn.Conv2d(corr_dim + flow_dim, fc_dim, 3, padding=1)

        def head(cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.LeakyReLU(0.1),
                                 nn.Conv2d(hidden, cout, 3, padding=1))

        self.gru = nn.Sequential(nn.Conv2d(fc_dim + 4 + feature_dim, hidden, 3, padding=1), nn.LeakyReLU(0.1),
                                 nn.Conv2d(hidden, hidden, 3, padding=1))
        self.feat_head, self.flow_head = head(feature_dim), head(4)

    def forward(self, features, flow, corr):
        lrelu = nn.functional.leaky_relu
        if self.scale is not None:
            features = _upsample(features, 1 / self.scale)
        motion = torch.cat((lrelu(self.convc1(corr), 0.1), lrelu(self.convf2(lrelu(self.convf1(flow), 0.1)), 0.1)), 1)
        out = self.gru(torch.cat((lrelu(self.conv(motion), 0.1), flow, features), dim=1))
        delta_features, delta_flow = self.feat_head(out), self.flow_head(out)
        if self.scale is not None:
            delta_features = _upsample(delta_features, self.scale)
            delta_flow = self.scale * _upsample(delta_flow, self.scale)
        return delta_features, delta_flow


def _grid(b: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack((xs, ys)).float()[None].repeat(b, 1, 1, 1)


class AMTS(nn.Module):
    """AMT-S: ``forward(img0, img1, embt)`` returns the frame at time ``embt`` (``[B, 1, 1, 1]``, 0..1) between
    ``img0`` and ``img1`` (``[B, 3, H, W]`` in 0..1, ``H, W`` multiples of 16), clamped to 0..1."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3, c4 = CHANNELS
        self.feat_encoder = _CorrelationEncoder(84)
        self.encoder = _Pyramid()
        self.decoder4 = _InitialDecoder(c4, c3)
        self.decoder3 = _IntermediateDecoder(c3, c2)
        self.decoder2 = _IntermediateDecoder(c2, c1)
        self.decoder1 = _MultiFlowDecoder(c1)
        self.update4 = _UpdateBlock(c3, None)
        self.update3 = _UpdateBlock(c2, 2)
        self.update2 = _UpdateBlock(c1, 4)
        self.comb_block = nn.Sequential(nn.Conv2d(3 * NUM_FLOWS, 6 * NUM_FLOWS, 3, 1, 1), nn.PReLU(6 * NUM_FLOWS),
                                        nn.Conv2d(6 * NUM_FLOWS, 3, 3, 1, 1))

    @staticmethod
    def _lookup(corr, coord, flow0, flow1, embt, downsample: int):
        """Correlation at the points each flow, extended linearly from t to the other frame, lands on."""
        if downsample != 1:
            inv = 1 / downsample
            flow0, flow1 = inv * _upsample(flow0, inv), inv * _upsample(flow1, inv)
        corr0, corr1 = corr(coord + flow1 * (1.0 / embt), coord + flow0 * (1.0 / (1.0 - embt)))
        return torch.cat((corr0, corr1), dim=1), torch.cat((flow0, flow1), dim=1)

    def _refine(self, update, corr, coord, flow0, flow1, ft, embt, downsample):
        corr_t, flows = self._lookup(corr, coord, flow0, flow1, embt, downsample)
        delta_ft, delta_flow = update(ft, flows, corr_t)
        return flow0 + delta_flow[:, :2], flow1 + delta_flow[:, 2:], ft + delta_ft

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, embt: torch.Tensor) -> torch.Tensor:
        # One mean per sample over both frames, reduced axis by axis as the authors do (same rounding).
        mean = torch.cat((img0, img1), dim=2).mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)
        img0, img1 = img0 - mean, img1 - mean
        b, _, h, w = img0.shape
        coord = _grid(b, h // 8, w // 8, img0.device)
        fmap0, fmap1 = self.feat_encoder(torch.cat((img0, img1))).split(b)
        corr = _BidirectionalCorrelation(fmap0, fmap1)
        f0 = self.encoder(img0)
        f1 = self.encoder(img1)

        flow0, flow1, ft = self.decoder4(f0[3], f1[3], embt)
        flow0, flow1, ft = self._refine(self.update4, corr, coord, flow0, flow1, ft, embt, 1)
        flow0, flow1, ft = self.decoder3(ft, f0[2], f1[2], flow0, flow1)
        flow0, flow1, ft = self._refine(self.update3, corr, coord, flow0, flow1, ft, embt, 2)
        flow0, flow1, ft = self.decoder2(ft, f0[1], f1[1], flow0, flow1)
        flow0, flow1, ft = self._refine(self.update2, corr, coord, flow0, flow1, ft, embt, 4)
        flow0, flow1, mask, residual = self.decoder1(ft, f0[0], f1[0], flow0, flow1)
        return torch.clamp(self._combine(img0, img1, flow0, flow1, mask, residual, mean), 0, 1)

    def _combine(self, img0, img1, flow0, flow1, mask, residual, mean):
        """Blend the ``NUM_FLOWS`` candidate frames (each a masked mix of both warped frames plus a
        residual), then add the combination block's correction to their mean."""
        b, _, h, w = flow0.shape
        n = NUM_FLOWS

        def per_flow(x: torch.Tensor, channels: int) -> torch.Tensor:
            return x.reshape(b * n, channels, h, w)

        def repeat(x: torch.Tensor) -> torch.Tensor:
            return x.unsqueeze(1).expand(b, n, *x.shape[1:]).reshape(b * n, *x.shape[1:])

        warped0 = backward_warp(repeat(img0), per_flow(flow0, 2))
        warped1 = backward_warp(repeat(img1), per_flow(flow1, 2))
        m = per_flow(mask, 1)
        candidates = (m * warped0 + (1 - m) * warped1 + repeat(mean) + per_flow(residual, 3)).view(b, n, 3, h, w)
        return candidates.mean(dim=1) + self.comb_block(candidates.view(b, 3 * n, h, w))
