"""The reward's log-probs equal a full forward of the model, for model families that transform their logits after
the LM head (the reward runs the decoder itself and takes the logits through the model's own output path).

Tiny random models built from configs (2 layers, hidden 64, vocabulary 512): each family's transformation is set to a
value that changes the log-probs a lot, so a reward that skipped it would fail here. The reference is the plain
computation: `model(ids).logits`, divided by the temperature, log-softmax, at every scored position.
"""

import pytest
import torch

from workbench.rewards import RewardConfig, _Seq, sequence_logprobs

SMALL = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=256, tie_word_embeddings=False)
FAMILIES = {  # model_type: what to set (the transformation after the LM head)
    "llama": {},
    "qwen2": {},
    "gemma2": {"final_logit_softcapping": 1.5, "query_pre_attn_scalar": 16},  # tanh soft-capping
    "cohere": {"logit_scale": 2.5},  # logits * logit_scale
    "granite": {"logits_scaling": 0.3},  # logits / logits_scaling
    "hyperclovax": {"logits_scaling": 3.0},  # logits * logits_scaling (the opposite of Granite)
    "minicpm3": {"dim_model_base": 16, "kv_lora_rank": 32, "q_lora_rank": 32, "qk_nope_head_dim": 16,
                 "qk_rope_head_dim": 8, "v_head_dim": 16, "num_key_value_heads": 4},  # hidden / (hidden_size / dim_model_base) before the head
    "falcon_h1": {"lm_head_multiplier": 2.0, "mamba_d_ssm": 32, "mamba_n_heads": 4, "mamba_d_head": 8,
                  "mamba_n_groups": 1, "mamba_d_state": 8, "mamba_chunk_size": 16, "mamba_expand": 1},
}


def _tiny(model_type: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, **{**SMALL, **FAMILIES[model_type]})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    for p in model.parameters():  # larger weights: log-probs far from uniform
        p.data.normal_(0, 0.2)
    return model


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_reward_logprobs_equal_a_full_forward(model_type):
    try:
        model = _tiny(model_type)
    except (ValueError, KeyError, ImportError) as exc:  # a family this transformers version does not have
        pytest.skip(f"{model_type}: {exc}")
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(3, 512, (12,), generator=g).tolist()
    seqs = [_Seq(prefix + torch.randint(3, 512, (n,), generator=g).tolist(), list(range(13, 12 + n)), "g")
            for n in (9, 14, 6)]  # one group: the shared prefix runs once, from a cache
    seqs.append(_Seq(torch.randint(3, 512, (20,), generator=g).tolist(), list(range(4, 20)), "other"))
    temperature = 0.7
    got = sequence_logprobs(model, seqs, temperature, pad_id=0, config=RewardConfig(batch_size=2))
    for s, lp in zip(seqs, got):
        with torch.no_grad():
            full = torch.log_softmax(model(torch.tensor([s.ids])).logits[0].float() / temperature, -1)
        want = torch.stack([full[t - 1, s.ids[t]] for t in s.targets])
        assert lp.shape == want.shape
        assert torch.allclose(lp, want, atol=2e-4), (model_type, (lp - want).abs().max().item())
    if FAMILIES[model_type]:  # the transformation matters: the bare LM head gives other numbers
        h = model.get_decoder()(torch.tensor([seqs[-1].ids])).last_hidden_state[0]
        bare = torch.log_softmax(model.get_output_embeddings()(h).float() / temperature, -1)
        bare = torch.stack([bare[t - 1, seqs[-1].ids[t]] for t in seqs[-1].targets])
        assert (bare - got[-1]).abs().max() > 1e-2
