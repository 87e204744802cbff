"""transformers' own runs of KimiLinearForCausalLM: a float64 reference and the bf16 yardstick of our CUDA default mode.

For each checkpoint it writes a bf16 copy in the published HF layout (every tensor rounded to bf16,
so transformers and our engine compute from the same weights), loads that copy three times into
transformers' KimiLinearForCausalLM (float64 on the CPU: the reference; fp32 on the GPU: a figure;
bf16 on the GPU: what a transformers user runs; see RUNS), and stores every run's logits on fixed
token sequences:
  * prefill of one sequence of 1, 17, 100, 300 and 1024 tokens, and of a batch of 2 x 64;
  * greedy: a 32-token prompt and 32 greedy steps through the cache (KDA recurrence, cached MLA). The
    reference run picks the tokens; the others are fed the same tokens, so every step compares
    logits after the same history.
Checkpoints: the golden tiny-kimi-public, the bundled assets/tiny-model, and "wide": a seeded random
checkpoint at real widths where it matters for rounding (hidden 2304, KDA and MLA heads of 128,
kv_lora 512, 32 experts top-8), 4 layers (KDA, KDA, KDA, MLA), generated here.

Writes into OUT_DIR: <name>/ (the bf16 checkpoint: config.json, model.safetensors), <name>.safetensors
(ids.<case> I32 [rows, T] or prompt.greedy [1, P] + tokens.greedy [steps]; ref.<case>, fp32.<case> and
bf16.<case> F32 [rows, T, vocab] or [steps, vocab]) and hf_bf16.json (the manifest test/gpu/hf-bf16.test.ts reads).

Usage (GPU machine: torch, transformers >= 5.17 with kimi_linear, safetensors):
  python3 test/gpu/hf_bf16_reference.py OUT_DIR
  python3 test/gpu/hf_bf16_reference.py OUT_DIR --device cpu --checkpoints tiny-kimi-public,tiny-model
  python3 test/gpu/hf_bf16_reference.py --plan    (cases, wide config and tensor layout as JSON; needs no torch;
                                                   test/unit/gpu/hf-bf16-plan.test.ts checks it against our loader)
Run by test/gpu/run-hf-bf16.sh."""
import argparse
import json
import math
import os
import random
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = {
    "tiny-kimi-public": os.path.join(REPO, "test", "fixtures", "golden", "tiny-kimi-public"),
    "tiny-model": os.path.join(REPO, "assets", "tiny-model"),
}
WIDE = "wide"
WIDE_SEED = 20261205
PREFILL_LENGTHS = (1, 17, 100, 300, 1024)
BATCH = (2, 64)
GREEDY = (32, 32)  # prompt tokens, greedy steps


def case_plan():
    """The cases every checkpoint runs: name, kind, rows x length (prefill) or prompt + steps (greedy)."""
    cases = [{"name": f"len{n}", "kind": "prefill", "rows": 1, "length": n} for n in PREFILL_LENGTHS]
    cases.append({"name": f"batch{BATCH[0]}x{BATCH[1]}", "kind": "prefill", "rows": BATCH[0], "length": BATCH[1]})
    cases.append({"name": "greedy", "kind": "greedy", "rows": 1, "length": GREEDY[0], "steps": GREEDY[1]})
    return cases


def token_rows(vocab, case, salt):
    """Fixed token ids for a case: rows x length, uniform over the vocabulary, seeded by the case."""
    rng = random.Random(f"{salt}/{case['name']}")
    return [[rng.randrange(vocab) for _ in range(case["length"])] for _ in range(case["rows"])]


def wide_config():
    """config.json (published schema, 1-based layer lists) of the wide checkpoint."""
    layers, full = 4, [4]
    return {
        "architectures": ["KimiLinearForCausalLM"], "model_type": "kimi_linear", "dtype": "bfloat16",
        "vocab_size": 16384, "hidden_size": 2304, "intermediate_size": 4608, "num_hidden_layers": layers,
        "num_attention_heads": 16, "num_key_value_heads": 16, "hidden_act": "silu", "rms_norm_eps": 1e-5,
        "initializer_range": 0.02, "tie_word_embeddings": False, "use_cache": True,
        "bos_token_id": 16380, "eos_token_id": 16382, "pad_token_id": 16383, "model_max_length": 8192,
        "q_lora_rank": None, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
        "v_head_dim": 128, "mla_use_nope": True,
        "linear_attn_config": {"kda_layers": [i for i in range(1, layers + 1) if i not in full], "full_attn_layers": full,
                               "num_heads": 16, "head_dim": 128, "short_conv_kernel_size": 4},
        "num_experts": 32, "num_experts_per_token": 8, "num_shared_experts": 1, "moe_intermediate_size": 256,
        "moe_renormalize": True, "moe_router_activation_func": "sigmoid", "routed_scaling_factor": 2.446,
        "use_grouped_topk": True, "num_expert_group": 1, "topk_group": 1, "first_k_dense_replace": 1,
        "moe_layer_freq": 1, "num_nextn_predict_layers": 0, "rope_theta": 10000.0, "rope_scaling": None,
    }


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


T0 = time.time()


# ------------------------------------------------------------------------------------------------
# checkpoints (torch from here on)
# ------------------------------------------------------------------------------------------------

def write_checkpoint(torch, save_file, dst, config, tensors, generator):
    """config.json + model.safetensors, every tensor bf16; written under a temporary name, then renamed."""
    os.makedirs(dst, exist_ok=True)
    model = os.path.join(dst, "model.safetensors")
    save_file({k: v.to(torch.bfloat16).cpu().contiguous() for k, v in tensors.items()}, model + ".tmp",
              metadata={"format": "pt", "generator": generator})
    os.replace(model + ".tmp", model)
    with open(os.path.join(dst, "config.json.tmp"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(os.path.join(dst, "config.json.tmp"), os.path.join(dst, "config.json"))


def bf16_copy(torch, load_file, save_file, src, dst):
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    config["dtype"] = "bfloat16"
    config.pop("torch_dtype", None)
    write_checkpoint(torch, save_file, dst, config, tensors, f"hf_bf16_reference.py: {os.path.relpath(src, REPO)} rounded to bf16")


def wide_layout(config):
    """Every tensor of a checkpoint for `config` in the published names: (name, shape, how it is drawn):
    matrices N(0, 0.02), embeddings N(0, 1), norms 1, conv taps N(0, 0.3), fla's A_log and dt_bias
    ranges, a small router bias (it only chooses experts)."""
    d, V = config["hidden_size"], config["vocab_size"]
    la = config["linear_attn_config"]
    H, K, conv = la["num_heads"], la["head_dim"], la["short_conv_kernel_size"]
    Hq, nope, rope, vd, L = (config["num_attention_heads"], config["qk_nope_head_dim"], config["qk_rope_head_dim"],
                             config["v_head_dim"], config["kv_lora_rank"])
    E, Im, I, S = config["num_experts"], config["moe_intermediate_size"], config["intermediate_size"], config["num_shared_experts"]
    mat, ones = ("normal", 0.02), ("ones",)
    out = [("model.embed_tokens.weight", [V, d], ("normal", 1.0)), ("lm_head.weight", [V, d], mat),
           ("model.norm.weight", [d], ones)]
    for i in range(config["num_hidden_layers"]):
        p, a = f"model.layers.{i}.", f"model.layers.{i}.self_attn."
        out += [(p + "input_layernorm.weight", [d], ones), (p + "post_attention_layernorm.weight", [d], ones)]
        if i + 1 in la["full_attn_layers"]:
            out += [(a + "q_proj.weight", [Hq * (nope + rope), d], mat), (a + "kv_a_proj_with_mqa.weight", [L + rope, d], mat),
                    (a + "kv_a_layernorm.weight", [L], ones), (a + "kv_b_proj.weight", [Hq * (nope + vd), L], mat),
                    (a + "o_proj.weight", [d, Hq * vd], mat)]
        else:
            for n in ("q", "k", "v"):
                out += [(a + f"{n}_proj.weight", [H * K, d], mat), (a + f"{n}_conv1d.weight", [H * K, 1, conv], ("normal", 0.3))]
            out += [(a + "A_log", [1, 1, H, 1], ("a_log",)), (a + "dt_bias", [H * K], ("dt_bias",)),
                    (a + "b_proj.weight", [H, d], mat), (a + "f_a_proj.weight", [K, d], mat),
                    (a + "f_b_proj.weight", [H * K, K], mat), (a + "g_a_proj.weight", [K, d], mat),
                    (a + "g_b_proj.weight", [H * K, K], mat), (a + "o_norm.weight", [K], ones),
                    (a + "o_proj.weight", [d, H * K], mat)]
        if i < config["first_k_dense_replace"]:
            out += [(p + "mlp.gate_proj.weight", [I, d], mat), (p + "mlp.up_proj.weight", [I, d], mat),
                    (p + "mlp.down_proj.weight", [d, I], mat)]
        else:
            b = p + "block_sparse_moe."
            out += [(b + "gate.weight", [E, d], mat), (b + "gate.e_score_correction_bias", [E], ("normal", 0.01))]
            for e in range(E):
                out += [(b + f"experts.{e}.w1.weight", [Im, d], mat), (b + f"experts.{e}.w3.weight", [Im, d], mat),
                        (b + f"experts.{e}.w2.weight", [d, Im], mat)]
            out += [(b + "shared_experts.gate_proj.weight", [Im * S, d], mat),
                    (b + "shared_experts.up_proj.weight", [Im * S, d], mat),
                    (b + "shared_experts.down_proj.weight", [d, Im * S], mat)]
    return out


def wide_tensors(torch, config, device):
    """wide_layout's tensors drawn on `device` from one seeded generator, in layout order."""
    g = torch.Generator(device=device).manual_seed(WIDE_SEED)

    def uniform(shape, lo, hi):
        return torch.rand(*shape, device=device, generator=g) * (hi - lo) + lo

    t = {}
    for name, shape, (how, *arg) in wide_layout(config):
        if how == "normal":
            t[name] = torch.randn(*shape, device=device, generator=g) * arg[0]
        elif how == "ones":
            t[name] = torch.ones(*shape, device=device)
        elif how == "a_log":  # A in [1, 16]
            t[name] = uniform(shape, 1.0, 16.0).log()
        else:  # dt_bias: softplus⁻¹ of dt, log-uniform in [1e-3, 0.1]
            dt = uniform(shape, math.log(1e-3), math.log(1e-1)).exp()
            t[name] = dt + torch.log(-torch.expm1(-dt))
    return t


# ------------------------------------------------------------------------------------------------
# transformers
# ------------------------------------------------------------------------------------------------

def load_hf(torch, folder, dtype, device, attn):
    """KimiLinearForCausalLM from the bf16 folder, refusing missing, unexpected or mismatched tensors.
    Experts run transformers' eager per-expert loop (as for the goldens: it computes in any dtype)."""
    from safetensors import safe_open
    from transformers import KimiLinearForCausalLM
    model, info = KimiLinearForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=attn,
                                                        experts_implementation="eager", output_loading_info=True)
    bad = {k: info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)}
    if bad:
        raise SystemExit(f"{folder}: transformers did not load the checkpoint cleanly: {bad}")
    model.to(device).eval()
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        want = f.get_tensor("lm_head.weight")
    if not torch.equal(model.lm_head.weight.detach().cpu().float(), want.float()):
        raise SystemExit(f"{folder}: transformers' lm_head in {dtype} is not the file's bf16 values")
    return model


def prefill_logits(torch, model, rows, device):
    """Logits [rows, T, vocab] of one forward over the rows (a batch when there are several)."""
    with torch.no_grad():
        ids = torch.tensor(rows, dtype=torch.long, device=device)
        return model(input_ids=ids, use_cache=False).logits.float().cpu()


def greedy_logits(torch, model, prompt, steps, device, tokens=None):
    """Logits [steps, vocab] of greedy decoding through the cache, and the tokens fed: the argmax of
    each step's logits, or `tokens` when given (teacher forcing, so that a run compares step by step)."""
    fed, rows = [], []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt], dtype=torch.long, device=device), use_cache=True)
        for s in range(steps):
            last = out.logits[0, -1].float()
            rows.append(last.cpu())
            tok = int(last.argmax()) if tokens is None else tokens[s]
            fed.append(tok)
            if s + 1 < steps:
                out = model(input_ids=torch.tensor([[tok]], dtype=torch.long, device=device),
                            past_key_values=out.past_key_values, use_cache=True)
    return torch.stack(rows), fed


# The runs, in order: the reference is float64 on the CPU, where transformers takes its pure-torch
# KDA path (the goldens' path). Its fp32 run on the GPU is not a reference: there transformers calls
# fla's chunk_kda, whose Triton matrix products run in TF32 even with torch's TF32 switched off
# (shared/golden/README.md measured 1.5e-3 for that kernel alone); it is kept as a figure.
RUNS = (("ref", "float64", "cpu"), ("fp32", "float32", None), ("bf16", "bfloat16", None))


def reference_runs(torch, folder, vocab, name, device, attn):
    """Every case in each of RUNS; the tensors of the reference file. The reference run picks the
    greedy tokens; the others are fed them."""
    tensors, ref_tokens = {}, None
    for tag, dtype_name, run_device in RUNS:
        t = time.time()
        run_device = torch.device(run_device) if run_device else device
        model = load_hf(torch, folder, getattr(torch, dtype_name), run_device, attn)
        for case in case_plan():
            rows = token_rows(vocab, case, name)
            if case["kind"] == "prefill":
                tensors[f"ids.{case['name']}"] = torch.tensor(rows, dtype=torch.int32)
                tensors[f"{tag}.{case['name']}"] = prefill_logits(torch, model, rows, run_device)
            else:
                logits, fed = greedy_logits(torch, model, rows[0], case["steps"], run_device, ref_tokens)
                if tag == "ref":
                    ref_tokens = fed
                    tensors[f"prompt.{case['name']}"] = torch.tensor(rows, dtype=torch.int32)
                    tensors[f"tokens.{case['name']}"] = torch.tensor(fed, dtype=torch.int32)
                tensors[f"{tag}.{case['name']}"] = logits
        log(f"{name}: transformers {dtype_name} on {run_device} ({model.config._attn_implementation} attention, "
            f"{getattr(model.config, '_experts_implementation', '?')} experts): {time.time() - t:.1f} s")
        del model
        if run_device.type == "cuda":
            torch.cuda.empty_cache()
    return tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", help="folder for the bf16 checkpoints, the reference files and hf_bf16.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--checkpoints", default=",".join([*SOURCES, WIDE]))
    ap.add_argument("--attn", default="sdpa", help="transformers' attn_implementation for both runs (its default: sdpa)")
    ap.add_argument("--plan", action="store_true", help="print the cases, the wide config and its tensor layout as JSON and stop")
    args = ap.parse_args()
    if args.plan:
        print(json.dumps({"cases": case_plan(), "sources": {k: os.path.relpath(v, REPO) for k, v in SOURCES.items()},
                          "wide_config": wide_config(), "wide_seed": WIDE_SEED,
                          "wide_layout": [[name, shape] for name, shape, _ in wide_layout(wide_config())]}))
        return
    if not args.out:
        ap.error("OUT_DIR is required (or --plan)")
    names = [n for n in args.checkpoints.split(",") if n]
    unknown = [n for n in names if n not in SOURCES and n != WIDE]
    if unknown:
        ap.error(f"unknown checkpoints {unknown}; known: {', '.join([*SOURCES, WIDE])}")
    missing = [SOURCES[n] for n in names if n in SOURCES and not os.path.isfile(os.path.join(SOURCES[n], "model.safetensors"))]
    if missing:
        raise SystemExit(f"missing checkpoints: {', '.join(missing)} (a clone of the repository has them)")

    import torch
    import transformers
    from safetensors.torch import load_file, save_file

    device = torch.device(args.device)
    # The fp32 run on the GPU as fp32 as torch lets it be: full fp32 matrix products and
    # convolutions (KDA's short conv runs through cuDNN, whose TF32 is on by default).
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    manifest = {"generator": "test/gpu/hf_bf16_reference.py", "torch": torch.__version__,
                "transformers": transformers.__version__, "device": str(device),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "attn_implementation": args.attn, "checkpoints": []}
    for name in names:
        folder = os.path.join(out, name)
        t = time.time()
        if name == WIDE:
            config = wide_config()
            write_checkpoint(torch, save_file, folder, config, wide_tensors(torch, config, device),
                             f"hf_bf16_reference.py: seeded random weights ({WIDE_SEED})")
        else:
            bf16_copy(torch, load_file, save_file, SOURCES[name], folder)
            with open(os.path.join(folder, "config.json")) as f:
                config = json.load(f)
        log(f"{name}: bf16 checkpoint in {folder} ({time.time() - t:.1f} s)")
        tensors = reference_runs(torch, folder, config["vocab_size"], name, device, args.attn)
        ref = os.path.join(out, f"{name}.safetensors")
        save_file(tensors, ref + ".tmp", metadata={"format": "pt", "generator": "test/gpu/hf_bf16_reference.py"})
        os.replace(ref + ".tmp", ref)
        manifest["checkpoints"].append({"name": name, "model": folder, "reference": ref,
                                        "vocab": config["vocab_size"], "cases": case_plan()})
    with open(os.path.join(out, "hf_bf16.json.tmp"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(os.path.join(out, "hf_bf16.json.tmp"), os.path.join(out, "hf_bf16.json"))
    log(f"wrote {os.path.join(out, 'hf_bf16.json')}")


if __name__ == "__main__":
    sys.exit(main())
