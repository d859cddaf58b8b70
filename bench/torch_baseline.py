#!/usr/bin/env python3
"""PyTorch CPU float32 baseline for `moeforge eval ppl` (issue #8's comparison).

A plain eager forward of a Qwen2 / Qwen2-MoE checkpoint in float32, written the
way transformers' eager modules compute it (per-expert loops over the routed
tokens, softmax routing, shared expert behind a sigmoid gate, rotate-half
rope), timed over the evaluation windows of ALGORITHMS.md §4. It is a
measurement tool, not part of moeforge or its tests.

    moeforge demo --keep /tmp/mf
    python3 - < /dev/null  # needs python3-torch (Debian) or pip torch, and numpy
    moeforge tokenize --tokenizer /tmp/mf/qwen2_moe_small --json \
        --file <(tail -c +$(( $(wc -c < testdata/tinyshakespeare.txt) * 9 / 10 + 1 )) testdata/tinyshakespeare.txt) > /tmp/eval_ids.json
    python3 bench/torch_baseline.py /tmp/mf/qwen2_moe_small /tmp/eval_ids.json --threads 2

It prints the perplexity (which must equal moeforge's, proving the baseline
computes the same model) and tokens/s over the same 16 × 256 windows in
batches of 4, as `moeforge eval ppl` runs them.
"""
import argparse
import json
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = np.frombuffer(data[b:e], dtype=np.uint8)
        if info["dtype"] == "BF16":
            v = raw.view(np.uint16).astype(np.uint32) << 16
            arr = v.view(np.float32)
        elif info["dtype"] == "F16":
            arr = raw.view(np.float16).astype(np.float32)
        elif info["dtype"] == "F32":
            arr = raw.view(np.float32)
        else:
            raise SystemExit(f"{name}: dtype {info['dtype']} not supported by the baseline")
        out[name] = torch.from_numpy(arr.copy().reshape(info["shape"]))
    return out


def load_dir(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for f in files:
        w.update(load_safetensors(os.path.join(d, f)))
    return w


class Model:
    def __init__(self, d):
        self.c = json.load(open(os.path.join(d, "config.json")))
        self.w = load_dir(d)
        c = self.c
        self.H = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.hd = c.get("head_dim") or self.H // self.nh
        theta = c.get("rope_theta") or c.get("rope_parameters", {}).get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        self.eps = c["rms_norm_eps"]
        self.moe = c["model_type"] == "qwen2_moe"

    def norm(self, x, w):
        v = x.pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(v + self.eps))

    def lin(self, x, name, bias=False):
        y = x @ self.w[name + ".weight"].T
        if bias:
            y = y + self.w[name + ".bias"]
        return y

    def ffn(self, x, p):
        return self.lin(F.silu(self.lin(x, p + "gate_proj")) * self.lin(x, p + "up_proj"), p + "down_proj")

    def rope(self, x, cos, sin):
        h = x.shape[-1] // 2
        rot = torch.cat((-x[..., h:], x[..., :h]), -1)
        return x * cos + rot * sin

    def forward(self, ids):
        B, T = ids.shape
        w = self.w
        x = w["model.embed_tokens.weight"][ids]
        pos = torch.arange(T, dtype=torch.float32)
        f = torch.outer(pos, self.inv_freq)
        emb = torch.cat((f, f), -1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((T, T), float("-inf")).triu(1)
        for i in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self.norm(x, w[p + "input_layernorm.weight"])
            bias = self.c.get("qkv_bias", True)
            q = self.lin(h, p + "self_attn.q_proj", bias).view(B, T, self.nh, self.hd).transpose(1, 2)
            k = self.lin(h, p + "self_attn.k_proj", bias).view(B, T, self.nkv, self.hd).transpose(1, 2)
            v = self.lin(h, p + "self_attn.v_proj", bias).view(B, T, self.nkv, self.hd).transpose(1, 2)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            rep = self.nh // self.nkv
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.nh * self.hd)
            x = x + self.lin(o, p + "self_attn.o_proj")
            h = self.norm(x, w[p + "post_attention_layernorm.weight"]).view(B * T, self.H)
            if self.moe:
                y = self.sparse(h, p + "mlp.")
            else:
                y = self.ffn(h, p + "mlp.")
            x = x + y.view(B, T, self.H)
        x = self.norm(x, w["model.norm.weight"])
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        return x @ head.T

    def sparse(self, h, p):
        c = self.c
        logits = self.lin(h, p + "gate")
        probs = logits.softmax(-1)
        top, sel = probs.topk(c["num_experts_per_tok"], -1)
        if c.get("norm_topk_prob"):
            top = top / top.sum(-1, keepdim=True)
        out = torch.zeros_like(h)
        for e in range(c["num_experts"]):
            tok, slot = (sel == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            y = self.ffn(h[tok], f"{p}experts.{e}.")
            out.index_add_(0, tok, y * top[tok, slot, None])
        if c.get("shared_expert_intermediate_size"):
            g = torch.sigmoid(self.lin(h, p + "shared_expert_gate"))
            out = out + g * self.ffn(h, p + "shared_expert.")
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("ids", help="JSON {\"ids\": [...]} of the evaluation text (moeforge tokenize --json)")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ids = json.load(open(a.ids))["ids"]
    wins = torch.tensor(ids[: a.windows * a.seqlen]).view(a.windows, a.seqlen)
    m = Model(a.model)
    best = None
    with torch.no_grad():
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            nll, n = 0.0, 0
            for b in range(0, a.windows, a.batch):
                x = wins[b : b + a.batch]
                lp = m.forward(x).log_softmax(-1)
                nll -= lp[:, :-1].gather(-1, x[:, 1:, None]).sum().item()
                n += x.shape[0] * (x.shape[1] - 1)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
    print(json.dumps({"ppl": math.exp(nll / n), "tokens_per_second": a.windows * a.seqlen / best,
                      "seconds": best, "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
