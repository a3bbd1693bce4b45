#!/usr/bin/env python3
"""Golden files for packages/ar, made by the reference's own GPT.

The reference's llama.py (TencentARC/SEED-Voken, src/IBQ/modules/transformer/llama.py) is imported
read-only from a path given on the command line; it is never copied into this repository (on
torch 1.13, which lacks F.scaled_dot_product_attention, its documented math form is supplied):

    git -C <SEED-Voken checkout> show HEAD:src/IBQ/modules/transformer/llama.py > /tmp/llama.py
    /usr/bin/python3 packages/ar/scripts/make_golden.py /tmp/llama.py

Writes into test/fixtures/:
- golden_gpt.safetensors: a small random-weight GPT (non-zero head, so the logits are not
  trivial) under its official names, and under `expected.*` the inputs, the logits of the
  training forward, the cross-entropy loss, every parameter's gradient, and the logits of the
  reference's KV-cached decode (decode_tokens: prefill, then one token at a time);
- ar_micro.ckpt + ar_micro.yaml: an official-format AR checkpoint (Lightning dict, `transformer.*`
  and the tokenizer under `first_stage_model.*`, taken from packages/ibq's micro test tokenizer)
  and its config in the official schema, for `ibq sample` tests.
"""
import importlib.util, json, math, os, struct, sys
from collections import OrderedDict
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'test', 'fixtures')
IBQ_FIXTURES = os.path.join(HERE, '..', '..', 'ibq', 'test', 'fixtures')

# The golden GPT: 4x4 tokens, 64 codes, 10 classes, 2 layers of width 32 (head dim 16), FFN 96.
GOLDEN = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, cond_dim=32, class_num=10,
              multiple_of=32, resid_dropout_p=0.1, ffn_dropout_p=0.1, token_drop=0.1, alng=1e-3)
# The sampling test GPT: 8x8 tokens over the micro tokenizer's 16 codes, 5 classes.
MICRO = dict(vocab_size=16, block_size=64, n_layer=2, n_head=2, n_embd=32, cond_dim=32, class_num=5,
             multiple_of=32, resid_dropout_p=0.1, ffn_dropout_p=0.1, token_drop=0.1, alng=1e-3)


def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
    """PyTorch 2's F.scaled_dot_product_attention (its documented math form), absent from Debian's torch 1.13."""
    assert dropout_p == 0.0
    L, S = q.size(-2), k.size(-2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    if is_causal:
        att = att.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(diagonal=0), float('-inf'))
    if attn_mask is not None:
        att = att.masked_fill(~attn_mask, float('-inf')) if attn_mask.dtype == torch.bool else att + attn_mask
    return torch.softmax(att, dim=-1) @ v


def load_llama(path):
    if not hasattr(torch.nn.functional, 'scaled_dot_product_attention'):
        torch.nn.functional.scaled_dot_product_attention = sdpa
    spec = importlib.util.spec_from_file_location('ibq_reference_llama', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def randomise(model, seed):
    """Every parameter random (head included); norm weights near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('norm.weight'):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def write_safetensors(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.int64:
            t = t.to(torch.int32)
        dt = {torch.float32: 'F32', torch.int32: 'I32'}[t.dtype]
        b = t.numpy().tobytes()
        header[k] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header['__metadata__'] = meta
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = OrderedDict()
    for k, v in header.items():
        if k == '__metadata__':
            continue
        assert v['dtype'] == 'F32', k
        a, b = v['data_offsets']
        out[k] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(v['shape']).clone()
    return out


def reference_decode(llama, model, labels, tokens):
    """Logits of the reference's KV-cached decode_tokens: prefill with the labels, then each token."""
    B, T = tokens.shape
    model.setup_caches(max_batch_size=B, max_seq_length=1 + T, dtype=model.class_emb.embedding_table.weight.dtype)
    out = []
    with torch.no_grad():
        logits, _ = model.decode_tokens(labels.reshape(B, 1), input_pos=torch.arange(0, 1), first_step=True)
        out.append(logits[:, -1])
        for p in range(T):
            x = (tokens[:, p:p + 1], labels.reshape(B, 1))
            logits, _ = model.decode_tokens(x, input_pos=torch.tensor([1 + p]))
            out.append(logits[:, -1])
    for b in model.blocks:
        b.attention.kv_cache = None
    return torch.stack(out, 1)


def golden(llama):
    torch.manual_seed(0)
    model = llama.GPT(**GOLDEN)
    randomise(model, 1)
    model.eval()
    g = torch.Generator().manual_seed(2)
    B, L = 3, GOLDEN['block_size']
    z = torch.randint(0, GOLDEN['vocab_size'], (B, L), generator=g)
    labels = torch.tensor([0, 7, GOLDEN['class_num']])  # the last row is the null class
    logits, loss = model((z[:, :-1], labels.reshape(B, 1)), targets=z)
    loss.backward()
    out = OrderedDict((k, v) for k, v in model.state_dict().items())
    exp = {'tokens': z[:, :-1], 'targets': z, 'labels': labels, 'logits': logits, 'loss': loss.reshape(1)}
    for name, p in model.named_parameters():
        exp['grad.' + name] = p.grad
    exp['decode_logits'] = reference_decode(llama, model, labels, z[:, :-1])
    for k, v in exp.items():
        out['expected.' + k] = v
    meta = {'generator': 'packages/ar/scripts/make_golden.py', 'torch': torch.__version__, 'config': json.dumps(GOLDEN)}
    write_safetensors(os.path.join(OUT, 'golden_gpt.safetensors'), out, meta)
    d = (exp['decode_logits'] - logits).abs().max().item()
    print('golden: loss', float(loss), '| max |logit|', logits.abs().max().item(), '| reference decode vs forward', d)


MICRO_YAML = """# ibq tests: a micro AR model over packages/ibq's micro tokenizer (official schema)
model:
  class_path: src.IBQ.models.cond_transformer_llama.Net2NetTransformer
  init_args:
    learning_rate: 3e-4
    first_stage_key: image
    cond_stage_key: class_label
    weight_decay: 5e-2
    wpe: 0.1
    wp: 1
    wp0: 0.005
    twde: 0
    transformer_config:
      target: src.IBQ.modules.transformer.llama.GPT
      params:
        vocab_size: {vocab_size}
        block_size: {block_size}
        n_layer: {n_layer}
        n_head: {n_head}
        n_embd: {n_embd}
        cond_dim: {cond_dim}
        multiple_of: {multiple_of}
        resid_dropout_p: 0.1
        ffn_dropout_p: 0.1
        token_drop: 0.1
        drop_path_rate: 0.0
        alng: 1e-3
        class_num: {class_num}
    first_stage_config:
      target: src.IBQ.models.ibqgan.IBQ
      params:
        ckpt_path:
        n_embed: 16
        embed_dim: 4
        learning_rate: 1e-4
        l2_normalize: False
        use_entropy_loss: True
        entropy_temperature: 0.01
        beta: 0.25
        use_ema: True
        stage: transformer
        ddconfig:
          double_z: False
          z_channels: 4
          resolution: 8
          in_channels: 3
          out_ch: 3
          ch: 32
          ch_mult: [1]
          num_res_blocks: 1
          attn_resolutions: []
          dropout: 0.0
        lossconfig:
          target: src.IBQ.modules.losses.DummyLoss
    cond_stage_config:
      target: src.IBQ.modules.util.Labelator
      params:
        n_classes: {class_num}
data:
  init_args:
    batch_size: 4
"""


def micro_checkpoint(llama):
    torch.manual_seed(0)
    model = llama.GPT(**MICRO)
    randomise(model, 4)
    sd = OrderedDict()
    for k, v in model.state_dict().items():
        sd['transformer.' + k] = v
    for k, v in read_safetensors(os.path.join(IBQ_FIXTURES, 'micro_ema.safetensors')).items():
        sd['first_stage_model.' + k] = v
    ckpt = {'epoch': 1, 'global_step': 10, 'pytorch-lightning_version': '2.2.0', 'state_dict': sd}
    torch.save(ckpt, os.path.join(OUT, 'ar_micro.ckpt'))
    with open(os.path.join(OUT, 'ar_micro.yaml'), 'w') as f:
        f.write(MICRO_YAML.format(**MICRO))
    print('ar_micro.ckpt:', len(sd), 'tensors')


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: make_golden.py PATH/TO/llama.py (the reference file, read in place)')
    llama = load_llama(sys.argv[1])
    os.makedirs(OUT, exist_ok=True)
    golden(llama)
    micro_checkpoint(llama)


if __name__ == '__main__':
    main()
