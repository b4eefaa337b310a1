"""`studio-nova bench model`: what NOVA costs over plain VACE, per chunk, in one run.

Measured in one process on one device, with the same random weights (random weights cost what
real ones cost): the denoising loop of one chunk for

- `vace`: the base WanVACETransformer3DModel alone (the sparse branch, no dense branch);
- `nova_cached_full`: NOVA, dense key/value computed once per chunk, cross-attention over the
  whole chunk;
- `nova_recomputed_full`: NOVA, dense branch recomputed at every step (the design's baseline);
- `nova_cached_window`: NOVA, cached, cross-attention limited to ±`window` latent frames.

Each variant reports ms per denoising step (all guidance passes of a step, batched), the
once-per-chunk dense time, the chunk latency (`steps` steps; extrapolated from `measure_steps`
timed steps when fewer are timed, and said so), peak device memory, and FLOPs per step counted
by torch's FlopCounterMode with the achieved TFLOP/s (and the share of the device's bf16 peak
where it is known). Full size builds the 1.3B transformer directly on the target device, so it
needs no host copy of the weights.

Run: `python -m studio_nova_benchmarks.nova_model --config tiny --device cpu` (the CLI wraps the same).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) of devices this project targets.
_BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


@dataclass(frozen=True)
class BenchShape:
    transformer: dict[str, Any]
    frames: int
    height: int
    width: int
    steps: int
    measure_steps: int
    text_tokens: int


def _shape(config: str) -> BenchShape:
    from studio_nova.models.tiny import FULL_TRANSFORMER, TINY_TRANSFORMER

    if config == "tiny":
        return BenchShape(TINY_TRANSFORMER, frames=81, height=32, width=48, steps=2, measure_steps=2,
                          text_tokens=512)
    if config == "full":
        return BenchShape(FULL_TRANSFORMER, frames=81, height=480, width=832, steps=50, measure_steps=5,
                          text_tokens=512)
    raise ValueError(f"config must be 'tiny' or 'full', got {config!r}")


def bench_model(
    config: str = "tiny",
    device: str = "cpu",
    *,
    steps: int | None = None,
    measure_steps: int | None = None,
    window: int = 2,
    cfg: bool = True,
    compile: bool = False,
    count_flops: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Benchmark the transformer's denoising loop for one chunk; returns a JSON-able dict.

    `steps`: denoising steps of a chunk (default 2 tiny, 50 full); `measure_steps`: how many
    are timed (the rest extrapolated); `cfg`: two guidance passes per step, batched; `window`:
    the windowed variant's reach in latent frames; `compile`: torch.compile the repeated blocks.
    """
    import torch

    from studio_nova.models.nova_transformer import NovaTransformer3DModel, cast_keeping_fp32

    shape = _shape(config)
    steps = int(steps or shape.steps)
    measure = min(int(measure_steps or shape.measure_steps), steps)
    if steps < 1 or measure < 1:
        raise ValueError(f"steps and measure_steps must be at least 1, got {steps}, {measure}")
    if window < 0:
        raise ValueError(f"window must be >= 0 latent frames for the windowed variant, got {window}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32

    # 1. Build the model with random weights directly on the device
    from diffusers import WanVACETransformer3DModel

    torch.manual_seed(seed)
    with torch.device(dev):
        base = WanVACETransformer3DModel(**shape.transformer)
    cast_keeping_fp32(base, dtype).eval()
    model = NovaTransformer3DModel.from_base(base, device=dev, torch_dtype=dtype,
                                             sample_size=[shape.height, shape.width]).eval()
    with torch.no_grad():  # a trained-looking adapter; its cost does not depend on the values
        for block in model.nova_blocks:
            block.to_out.weight.normal_(0.0, 0.02)
    if compile:
        for block in [*model.vace.blocks, *model.vace.vace_blocks, *model.nova_blocks]:
            block.compile()

    # 2. Inputs of one chunk
    cfgt = model.vace.config
    latent_t = (shape.frames - 1) // 4 + 1
    lh, lw = shape.height // 8, shape.width // 8
    passes = 2 if cfg else 1
    g = torch.Generator(device=dev).manual_seed(seed)
    latents = torch.randn(1, cfgt.in_channels, latent_t, lh, lw, device=dev, generator=g)
    source = torch.randn(1, cfgt.in_channels, latent_t, lh, lw, device=dev, generator=g, dtype=torch.float32).to(dtype)
    control = torch.randn(passes, cfgt.vace_in_channels, latent_t, lh, lw, device=dev, generator=g).to(dtype)
    context = torch.randn(passes, shape.text_tokens, cfgt.text_dim, device=dev, generator=g).to(dtype)
    dense_context = torch.zeros(1, shape.text_tokens, cfgt.text_dim, device=dev, dtype=dtype)
    timesteps = torch.linspace(999.0, 0.0, steps + 1, device=dev)[:-1]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def loop(forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n: int) -> torch.Tensor:
        x = latents
        for i in range(n):
            t = timesteps[i].expand(passes)
            pred = forward(x.to(dtype).expand(passes, *x.shape[1:]), t).float()
            if passes == 2:
                cond, uncond = pred.chunk(2)
                pred = uncond + 5.0 * (cond - uncond)
            x = x - pred / steps  # an Euler step: the scheduler's cost is negligible
        return x

    def vace_forward(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model.vace(x, t, context, control_hidden_states=control, return_dict=False)[0]

    def nova_forward(cache: Any, recompute: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model(x, t, context, control, dense_cache=cache,
                         source_latents=source if recompute else None,
                         dense_encoder_hidden_states=dense_context if recompute else None,
                         return_dict=False)[0]
        return forward

    # 3. Measure each variant
    variants: dict[str, dict[str, Any]] = {}
    plans = [
        ("vace", -1, None),
        ("nova_cached_full", -1, False),
        ("nova_recomputed_full", -1, True),
        ("nova_cached_window", window, False),
    ]
    for name, reach, recompute in plans:
        model.set_window(reach)
        with torch.no_grad():
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            dense_s = 0.0
            cache = None
            if recompute is False:
                model.encode_dense(source, dense_context)  # warm-up (kernels, compile)
                sync()
                started = time.perf_counter()
                cache = model.encode_dense(source, dense_context)
                sync()
                dense_s = time.perf_counter() - started
            forward = vace_forward if recompute is None else nova_forward(cache, bool(recompute))
            loop(forward, 1)  # warm-up
            sync()
            started = time.perf_counter()
            loop(forward, measure)
            sync()
            step_s = (time.perf_counter() - started) / measure
            flops = _count_flops(lambda: loop(forward, 1)) if count_flops else None
            peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
        entry: dict[str, Any] = {
            "ms_per_step": round(step_s * 1e3, 3),
            "dense_once_ms": round(dense_s * 1e3, 3),
            "chunk_s": round(dense_s + steps * step_s, 4),
            "chunk_extrapolated": measure < steps,
            "peak_memory_mb": None if peak is None else round(peak / 2**20, 1),
        }
        if cache is not None:
            entry["dense_cache_mb"] = round(cache.nbytes() / 2**20, 1)
        if flops is not None:
            entry["gflop_per_step"] = round(flops / 1e9, 6)
            entry["achieved_tflops"] = round(flops / step_s / 1e12, 3)
        variants[name] = entry
        del cache

    # 4. Summary
    vace_chunk = variants["vace"]["chunk_s"]
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    peak_tflops = next((v for k, v in _BF16_PEAK_TFLOPS.items() if k in device_name), None)
    for entry in variants.values():
        entry["over_vace"] = round(entry["chunk_s"] / vace_chunk, 4) if vace_chunk else None
        if peak_tflops and "achieved_tflops" in entry:
            entry["share_of_bf16_peak"] = round(entry["achieved_tflops"] / peak_tflops, 4)
    import diffusers

    return {
        "config": config,
        "device": str(dev),
        "device_name": device_name,
        "dtype": str(dtype).replace("torch.", ""),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "chunk": {"frames": shape.frames, "height": shape.height, "width": shape.width,
                  "latent_grid": [latent_t, lh // 2, lw // 2], "tokens": latent_t * (lh // 2) * (lw // 2)},
        "steps": steps,
        "measured_steps": measure,
        "guidance_passes": passes,
        "window": window,
        "compiled": compile,
        "bf16_peak_tflops": peak_tflops,
        "host_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "variants": variants,
    }


def _count_flops(run: Callable[[], Any]) -> int:
    """FLOPs of `run`, attention included: torch counts the CUDA attention kernels but not the
    CPU one, so its formula is registered for that op too."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    custom = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        custom[op] = cpu_sdpa
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with counter:
        run()
    return int(counter.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio_nova_benchmarks.nova_model", description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--measure-steps", type=int, default=None)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--no-cfg", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", action="store_true", help="(always JSON; accepted for CLI parity)")
    args = parser.parse_args(argv)
    try:
        result = bench_model(args.config, args.device, steps=args.steps, measure_steps=args.measure_steps,
                             window=args.window, cfg=not args.no_cfg, compile=args.compile)
    except ValueError as exc:
        print(f"bench_model: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
