"""Writes a seeded synthetic Kimi-Linear checkpoint at the real 48B-A3B widths (spec section 1) in the
published HF layout: config.json in the published schema and one bf16 model.safetensors. Only the
layer count is cut (the full model is 91.5 GiB in bf16). Values are made on the GPU like the speed
anchor's (/work/shared/research/hf-scale-anchor.md): matrices N(0, 0.02), embeddings N(0, 1),
norms 1, fla-style A_log and dt_bias, zero router bias. Layer 0 is dense, the rest MoE; the last
layer (and every 4th, 1-based, as in the real model) is MLA, the others KDA.

Usage: python3 make_synthetic.py OUT_DIR [LAYERS]"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

D, VOCAB, DENSE_I = 2304, 163840, 9216
H, HK = 32, 128                      # KDA heads and head size
NOPE, ROPE, VDIM, KV_LORA = 128, 64, 128, 512
E, TOPK, MOE_I = 256, 8, 1024


def config(layers):
    full = sorted(set([i for i in range(4, layers + 1, 4)] + [layers]))
    return {
        "architectures": ["KimiLinearForCausalLM"], "model_type": "kimi_linear", "dtype": "bfloat16",
        "vocab_size": VOCAB, "hidden_size": D, "intermediate_size": DENSE_I, "num_hidden_layers": layers,
        "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 72, "hidden_act": "silu",
        "rms_norm_eps": 1e-5, "initializer_range": 0.02, "tie_word_embeddings": False, "use_cache": True,
        "bos_token_id": 163584, "eos_token_id": 163586, "pad_token_id": 163839, "model_max_length": 1048576,
        "q_lora_rank": None, "kv_lora_rank": KV_LORA, "qk_nope_head_dim": NOPE, "qk_rope_head_dim": ROPE,
        "v_head_dim": VDIM, "mla_use_nope": True,
        "linear_attn_config": {"kda_layers": [i for i in range(1, layers + 1) if i not in full], "full_attn_layers": full,
                               "num_heads": H, "head_dim": HK, "short_conv_kernel_size": 4},
        "num_experts": E, "num_experts_per_token": TOPK, "num_shared_experts": 1, "moe_intermediate_size": MOE_I,
        "moe_renormalize": True, "moe_router_activation_func": "sigmoid", "routed_scaling_factor": 2.446,
        "use_grouped_topk": True, "num_expert_group": 1, "topk_group": 1, "first_k_dense_replace": 1,
        "moe_layer_freq": 1, "num_nextn_predict_layers": 0, "rope_theta": 10000.0, "rope_scaling": None,
    }


def main():
    out = sys.argv[1]
    layers = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.makedirs(out, exist_ok=True)
    cfg = config(layers)
    g = torch.Generator(device="cuda").manual_seed(1234)
    t = {}

    def mat(name, rows, cols, std=0.02):
        t[name] = (torch.randn(rows, cols, device="cuda", generator=g) * std).to(torch.bfloat16)

    def ones(name, n):
        t[name] = torch.ones(n, device="cuda", dtype=torch.bfloat16)

    t["model.embed_tokens.weight"] = torch.randn(VOCAB, D, device="cuda", generator=g).to(torch.bfloat16)
    mat("lm_head.weight", VOCAB, D)
    ones("model.norm.weight", D)
    full = set(cfg["linear_attn_config"]["full_attn_layers"])
    for i in range(layers):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        ones(p + "input_layernorm.weight", D)
        ones(p + "post_attention_layernorm.weight", D)
        if i + 1 in full:
            mat(a + "q_proj.weight", H * (NOPE + ROPE), D)
            mat(a + "kv_a_proj_with_mqa.weight", KV_LORA + ROPE, D)
            ones(a + "kv_a_layernorm.weight", KV_LORA)
            mat(a + "kv_b_proj.weight", H * (NOPE + VDIM), KV_LORA)
            mat(a + "o_proj.weight", D, H * VDIM)
        else:
            P = H * HK
            for n in ("q", "k", "v"):
                mat(a + f"{n}_proj.weight", P, D)
                t[a + f"{n}_conv1d.weight"] = (torch.randn(P, 1, 4, device="cuda", generator=g) * 0.5).to(torch.bfloat16)
            # fla's initialisation: A in [1, 16], dt in [1e-3, 0.1] through an inverse softplus.
            t[a + "A_log"] = torch.log(torch.rand(1, 1, H, 1, device="cuda", generator=g) * 15 + 1)
            dt = torch.exp(torch.rand(P, device="cuda", generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            t[a + "dt_bias"] = dt + torch.log(-torch.expm1(-dt))
            mat(a + "b_proj.weight", H, D)
            mat(a + "f_a_proj.weight", HK, D)
            mat(a + "f_b_proj.weight", P, HK)
            mat(a + "g_a_proj.weight", HK, D)
            mat(a + "g_b_proj.weight", P, HK)
            ones(a + "o_norm.weight", HK)
            mat(a + "o_proj.weight", D, P)
        if i == 0:
            mat(p + "mlp.gate_proj.weight", DENSE_I, D)
            mat(p + "mlp.up_proj.weight", DENSE_I, D)
            mat(p + "mlp.down_proj.weight", D, DENSE_I)
        else:
            b = p + "block_sparse_moe."
            mat(b + "gate.weight", E, D)
            t[b + "gate.e_score_correction_bias"] = torch.zeros(E, device="cuda")
            for e in range(E):
                mat(b + f"experts.{e}.w1.weight", MOE_I, D)
                mat(b + f"experts.{e}.w3.weight", MOE_I, D)
                mat(b + f"experts.{e}.w2.weight", D, MOE_I)
            mat(b + "shared_experts.gate_proj.weight", MOE_I, D)
            mat(b + "shared_experts.up_proj.weight", MOE_I, D)
            mat(b + "shared_experts.down_proj.weight", D, MOE_I)
    params = sum(v.numel() for v in t.values())
    save_file({k: v.cpu().contiguous() for k, v in t.items()}, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print(f"synthetic checkpoint: {layers} layers, {params / 1e9:.2f} B parameters, MLA layers (1-based) {sorted(full)}")


if __name__ == "__main__":
    main()
