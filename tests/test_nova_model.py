"""NovaTransformer3DModel at toy size on the CPU: the acceptance of issue 4 for the model.

The real classes (diffusers' WanVACETransformer3DModel inside, our adapter around it) with a
tiny seeded config written by `init_tiny` in the real on-disk formats. Nothing is downloaded.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch.nn.functional as F  # noqa: E402
from nova_fixtures import _one_thread, tiny  # noqa: E402,F401  (shared fixtures)
from safetensors import safe_open  # noqa: E402

from studio_nova.models.nova_transformer import (  # noqa: E402
    ADAPTER_FILE,
    NovaTransformer3DModel,
    apply_rope,
    load_vace_transformer,
    windowed_attention,
)
from studio_nova.models.tiny import TINY_TRANSFORMER  # noqa: E402


def _inputs(batch: int = 2, frames: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    h, w = 4, 6  # latent grid: 2x3 patches per latent frame
    return {
        "hidden_states": torch.randn(batch, 16, frames, h, w, generator=g),
        "timestep": torch.full((batch,), 700.0),
        "encoder_hidden_states": torch.randn(batch, 7, TINY_TRANSFORMER["text_dim"], generator=g),
        "control_hidden_states": torch.randn(batch, 96, frames, h, w, generator=g),
        "source": torch.randn(1, 16, frames, h, w, generator=g),
    }


def _run(model, x, **kw):
    with torch.no_grad():
        return model(
            x["hidden_states"], x["timestep"], x["encoder_hidden_states"], x["control_hidden_states"],
            return_dict=False, **kw,
        )[0]


def _base_output(model, x):
    with torch.no_grad():
        return model.vace(
            x["hidden_states"], x["timestep"], x["encoder_hidden_states"],
            control_hidden_states=x["control_hidden_states"], return_dict=False,
        )[0]


def test_base_loads_from_its_folder_with_the_weights_it_was_saved_with(tiny):
    torch.manual_seed(0)  # init_tiny seeds the transformer with `seed`
    from diffusers import WanVACETransformer3DModel

    reference = WanVACETransformer3DModel(**TINY_TRANSFORMER).eval()
    loaded = load_vace_transformer(tiny.base)
    ref_state, got_state = reference.state_dict(), loaded.state_dict()
    assert ref_state.keys() == got_state.keys()
    assert all(torch.equal(ref_state[k], got_state[k]) for k in ref_state)
    x = _inputs()
    with torch.no_grad():  # RoPE tables are rebuilt, not loaded: the forward must agree too
        args = (x["hidden_states"], x["timestep"], x["encoder_hidden_states"])
        a = reference(*args, control_hidden_states=x["control_hidden_states"], return_dict=False)[0]
        b = loaded(*args, control_hidden_states=x["control_hidden_states"], return_dict=False)[0]
    assert torch.equal(a, b)


def test_with_the_zero_initialised_adapter_nova_equals_base_vace(tiny):
    model = NovaTransformer3DModel.from_base(tiny.base)
    x = _inputs()
    base = _base_output(model, x)
    nova = _run(model, x, source_latents=x["source"])
    assert (nova - base).abs().max().item() <= 1e-5
    assert base.abs().mean().item() > 0.1  # a real output, not zeros on both sides


def test_a_trained_adapter_reads_the_source_and_cached_kv_equals_recomputing(tiny):
    model = NovaTransformer3DModel.from_base(tiny.base, adapter=tiny.adapter)
    x = _inputs()
    base = _base_output(model, x)
    recomputed = _run(model, x, source_latents=x["source"])
    with torch.no_grad():
        cache = model.encode_dense(x["source"])
    cached = _run(model, x, dense_cache=cache)
    assert (cached - recomputed).abs().max().item() <= 1e-5
    assert (cached - base).abs().max().item() > 1e-3, "the adapter must change the output"
    other = _run(model, x, source_latents=x["source"].flip(2))
    assert (other - cached).abs().max().item() > 1e-4, "the output must depend on the source"
    # One batch-1 cache serves a batch of guidance passes: same as running each pass alone.
    single = {k: (v[:1] if k != "source" else v) for k, v in x.items()}
    assert (_run(model, single, dense_cache=cache) - cached[:1]).abs().max().item() <= 1e-5


def test_windowed_cross_attention_equals_full_attention_under_a_frame_band_mask():
    g = torch.Generator().manual_seed(1)
    frames, per_frame = 6, 3
    q, k, v = (torch.randn(2, 2, frames * per_frame, 8, generator=g) for _ in range(3))
    frame_of = torch.arange(frames * per_frame) // per_frame
    for window in (0, 1, 2):
        band = (frame_of[:, None] - frame_of[None, :]).abs() <= window
        truth = F.scaled_dot_product_attention(q, k, v, attn_mask=band)
        got = windowed_attention(q, k, v, frames, window)
        assert (got - truth).abs().max().item() <= 1e-5, window
    full = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(windowed_attention(q, k, v, frames, -1), full)
    # A batch-1 key/value (the dense cache) serves a batch of queries (the guidance passes).
    for window in (-1, 0, 1):
        band = (frame_of[:, None] - frame_of[None, :]).abs() <= (window if window >= 0 else frames)
        truth = F.scaled_dot_product_attention(q, k[:1].expand_as(k), v[:1].expand_as(v), attn_mask=band)
        got = windowed_attention(q, k[:1], v[:1], frames, window)
        assert (got - truth).abs().max().item() <= 1e-5, window
    assert torch.allclose(windowed_attention(q, k, v, frames, 3), full, atol=1e-6)  # 2w+1 >= frames


def test_window_is_a_config_option_that_changes_what_the_model_reads(tiny):
    model = NovaTransformer3DModel.from_base(tiny.base, adapter=tiny.adapter, window=0)
    assert model.config.window == 0
    x = _inputs(frames=5)
    narrow = _run(model, x, source_latents=x["source"])
    model.set_window(-1)
    full = _run(model, x, source_latents=x["source"])
    model.set_window(4)  # covers all 5 frames: the same as the whole chunk
    wide = _run(model, x, source_latents=x["source"])
    assert (wide - full).abs().max().item() <= 1e-5
    assert (narrow - full).abs().max().item() > 1e-5
    with pytest.raises(ValueError, match="window"):
        model.set_window(-2)


def test_rope_rotates_pairs_as_complex_multiplication(tiny):
    model = NovaTransformer3DModel.from_base(tiny.base)
    latents = torch.zeros(1, 16, 3, 4, 6)
    cos, sin = model.vace.rope(latents)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, cos.shape[1], 2, cos.shape[-1], generator=g)
    angle = torch.atan2(sin[..., 1::2], cos[..., 0::2]).float()
    truth = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2)).contiguous())
                               * torch.polar(torch.ones_like(angle), angle)).flatten(-2)
    assert (apply_rope(x, cos, sin) - truth).abs().max().item() <= 1e-5


def test_after_one_backward_only_adapter_parameters_have_gradients(tiny):
    model = NovaTransformer3DModel.from_base(tiny.base, adapter=tiny.adapter)
    model.train()
    x = _inputs()
    out = model(x["hidden_states"], x["timestep"], x["encoder_hidden_states"], x["control_hidden_states"],
                source_latents=x["source"], return_dict=False)[0]
    out.square().mean().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    adapter = {n for n, _ in model.named_parameters() if n.startswith("nova_blocks.")}
    assert with_grad == adapter
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.endswith("to_out.weight"))
    assert not any(p.requires_grad for p in model.vace.parameters())


def test_adapter_round_trips_through_save_and_load_bit_exactly(tiny, tmp_path):
    model = NovaTransformer3DModel.from_base(tiny.base, adapter=tiny.adapter, window=2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.adapter_parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    path = model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["config.json", ADAPTER_FILE]
    with safe_open(str(path), framework="pt") as fh:
        keys = set(fh.keys())
    assert keys == set(model.adapter_state_dict())  # the adapter only: no base weight in the file
    loaded = NovaTransformer3DModel.from_pretrained(tmp_path / "saved", base=tiny.base)
    assert loaded.config.window == 2  # options travel with the adapter
    want, got = model.adapter_state_dict(), loaded.adapter_state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    x = _inputs()
    assert torch.equal(_run(model, x, source_latents=x["source"]), _run(loaded, x, source_latents=x["source"]))


def test_an_adapter_that_does_not_fit_the_base_is_refused_naming_the_file(tiny, tmp_path):
    from safetensors.torch import save_file

    model = NovaTransformer3DModel.from_base(tiny.base)
    state = model.adapter_state_dict()
    state.pop(next(iter(state)))
    bad = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(bad))
    with pytest.raises(ValueError, match="bad.safetensors"):
        model.load_adapter(bad)
    with pytest.raises(FileNotFoundError, match="no NOVA adapter"):
        model.load_adapter(tmp_path / "missing.safetensors")


def test_bench_model_tiny_on_cpu_reports_every_variant_in_one_run():
    from studio_nova_benchmarks.nova_model import bench_model

    result = bench_model("tiny", "cpu")
    variants = result["variants"]
    assert set(variants) == {"vace", "nova_cached_full", "nova_recomputed_full", "nova_cached_window"}
    assert result["chunk"]["tokens"] == 21 * 2 * 3 and result["guidance_passes"] == 2
    assert variants["vace"]["over_vace"] == 1.0
    assert all(v["ms_per_step"] > 0 and v["chunk_s"] > 0 for v in variants.values())
    # FLOPs are counted, not timed, so they order exactly: the dense branch and the
    # cross-attention cost something, recomputing costs more, a window costs less.
    flops = {k: v["gflop_per_step"] for k, v in variants.items()}
    assert flops["vace"] < flops["nova_cached_window"] < flops["nova_cached_full"] < flops["nova_recomputed_full"]
    assert variants["nova_cached_full"]["dense_once_ms"] > 0 and variants["nova_recomputed_full"]["dense_once_ms"] == 0
    with pytest.raises(ValueError, match="config"):
        bench_model("huge", "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bench_model_runs_on_cuda_in_bf16():
    from studio_nova_benchmarks.nova_model import bench_model

    result = bench_model("tiny", "cuda")
    assert result["dtype"] == "bfloat16"
    assert all(v["peak_memory_mb"] > 0 for v in result["variants"].values())


@pytest.mark.slow
def test_full_size_cost_on_the_meta_device_matches_the_design_cost_model():
    """The full 1.3B config, counted (not run) on the meta device: VACE ≈ 425 TFLOP per pass per
    81×832×480 chunk (DESIGN section 8), and NOVA with a ±2-frame window within 1.15× of it per
    chunk of 50 CFG steps, dense branch included; whole-chunk cross-attention is not."""
    from diffusers import WanVACETransformer3DModel

    from studio_nova.models.tiny import FULL_TRANSFORMER
    from studio_nova_benchmarks.nova_model import _count_flops

    with torch.device("meta"):
        base = WanVACETransformer3DModel(**FULL_TRANSFORMER)
        model = NovaTransformer3DModel(base_config=dict(FULL_TRANSFORMER), vace=base)
        x = torch.empty(2, 16, 21, 60, 104)
        control = torch.empty(2, 96, 21, 60, 104)
        text = torch.empty(2, 512, 4096)
        t = torch.full((2,), 500.0)
        source = torch.empty(1, 16, 21, 60, 104)
    caches = []
    with torch.no_grad():
        vace = _count_flops(lambda: base(x, t, text, control_hidden_states=control, return_dict=False))
        dense = _count_flops(lambda: caches.append(model.encode_dense(source)))
        model.set_window(2)
        windowed = _count_flops(lambda: model(x, t, text, control, dense_cache=caches[0], return_dict=False))
        model.set_window(-1)
        full = _count_flops(lambda: model(x, t, text, control, dense_cache=caches[0], return_dict=False))
    assert abs(vace / 2 / 1e12 - 425) / 425 < 0.02
    assert (50 * windowed + dense) / (50 * vace) <= 1.15
    assert (50 * full + dense) / (50 * vace) > 1.15
