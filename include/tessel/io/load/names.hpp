#pragma once
// Parameter names. A model names its parameters as GGUF does (`token_embd.weight`,
// `blk.N.attn_q.weight`, ...), so a GGUF file needs no map; the maps here give, for each
// architecture that loads from Hugging Face checkpoints, the checkpoint's name of a GGUF name.
// A map returns std::nullopt (or, for Mamba, the name unchanged) for a name it does not know,
// and the loader then reports the tensor missing.

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace tessel::io::detail {

/// "blk.N.rest" -> (N, rest); nullopt for other names.
inline std::optional<std::pair<int, std::string>> split_block_name(const std::string& name) {
  if (!name.starts_with("blk.")) return std::nullopt;
  const auto dot = name.find('.', 4);
  if (dot == std::string::npos) return std::nullopt;
  return std::pair{std::stoi(name.substr(4, dot - 4)), name.substr(dot + 1)};
}

/// Which of q, k, v (0, 1, 2) a name "attn_q.weight" ... is, and its suffix; -1 for others.
inline int qkv_part(const std::string& rest, std::string& suffix) {
  static constexpr std::string_view parts[] = {"attn_q.", "attn_k.", "attn_v."};
  for (int j = 0; j < 3; ++j)
    if (rest.starts_with(parts[j])) {
      suffix = rest.substr(parts[j].size());
      return j;
    }
  return -1;
}

/// True when `name` ends with `suffix`.
inline bool is_name(const std::string& name, std::string_view suffix) {
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// Where a GPT-2 parameter lies in a Hugging Face checkpoint (without the `transformer.`
/// prefix): a tensor as it is, or outputs [first, first + count) of a Conv1D, whose weight is
/// stored [in, out] (to transpose) and whose bias is [out]. The fused c_attn holds q, k, v.
struct Gpt2HfTensor {
  std::string name;
  bool conv1d = false;
  std::int64_t first = 0, count = 0;
};
inline std::optional<Gpt2HfTensor> gpt2_hf_tensor(const std::string& n, std::int64_t dim,
                                                  std::int64_t hidden) {
  const auto as_is = [](std::string hf) { return Gpt2HfTensor{std::move(hf), false, 0, 0}; };
  if (n == "token_embd.weight") return as_is("wte.weight");
  if (n == "position_embd.weight") return as_is("wpe.weight");
  if (n == "output.weight") return as_is("lm_head.weight");
  if (n.starts_with("output_norm.")) return as_is("ln_f." + n.substr(12));
  const auto blk = split_block_name(n);
  if (!blk) return std::nullopt;
  const std::string h = "h." + std::to_string(blk->first) + ".";
  const std::string& rest = blk->second;
  const char* kind = rest.ends_with(".weight") ? ".weight" : ".bias";
  const auto conv = [&](const char* hf, std::int64_t first, std::int64_t count) {
    return Gpt2HfTensor{h + hf + kind, true, first, count};
  };
  std::string suffix;
  if (const int part = qkv_part(rest, suffix); part >= 0)
    return conv("attn.c_attn", part * dim, dim);
  if (rest.starts_with("attn_output.")) return conv("attn.c_proj", 0, dim);
  if (rest.starts_with("ffn_up.")) return conv("mlp.c_fc", 0, hidden);
  if (rest.starts_with("ffn_down.")) return conv("mlp.c_proj", 0, dim);
  if (rest.starts_with("attn_norm.")) return as_is(h + "ln_1." + rest.substr(10));
  if (rest.starts_with("ffn_norm.")) return as_is(h + "ln_2." + rest.substr(9));
  return std::nullopt;
}

/// BertModel's name of a Bert parameter (without the `bert.` prefix of BertFor* heads).
inline std::optional<std::string> bert_hf_name(const std::string& n) {
  const auto tail = [&](std::size_t k) { return n.substr(k); };  // ".weight" / ".bias"
  if (n.starts_with("token_embd.")) return "embeddings.word_embeddings" + tail(10);
  if (n.starts_with("position_embd.")) return "embeddings.position_embeddings" + tail(13);
  if (n.starts_with("token_types.")) return "embeddings.token_type_embeddings" + tail(11);
  if (n.starts_with("token_embd_norm.")) return "embeddings.LayerNorm" + tail(15);
  const auto blk = split_block_name(n);
  if (!blk) return std::nullopt;
  const std::string l = "encoder.layer." + std::to_string(blk->first) + ".";
  const std::string& rest = blk->second;
  const auto dot = rest.find('.');
  const std::string what = rest.substr(0, dot), suffix = rest.substr(dot);
  if (what == "attn_q") return l + "attention.self.query" + suffix;
  if (what == "attn_k") return l + "attention.self.key" + suffix;
  if (what == "attn_v") return l + "attention.self.value" + suffix;
  if (what == "attn_output") return l + "attention.output.dense" + suffix;
  if (what == "attn_output_norm") return l + "attention.output.LayerNorm" + suffix;
  if (what == "ffn_up") return l + "intermediate.dense" + suffix;
  if (what == "ffn_down") return l + "output.dense" + suffix;
  if (what == "layer_output_norm") return l + "output.LayerNorm" + suffix;
  return std::nullopt;
}

/// transformers' MambaForCausalLM name of a Mamba parameter (the name itself when unknown).
inline std::string mamba_hf_name(const std::string& n) {
  if (n == "token_embd.weight") return "backbone.embeddings.weight";
  if (n == "output_norm.weight") return "backbone.norm_f.weight";
  if (n.rfind("blk.", 0) != 0) return n;
  const std::size_t dot = n.find('.', 4);
  const std::string pre = "backbone.layers." + n.substr(4, dot - 4) + ".";
  const std::string rest = n.substr(dot + 1);
  if (rest == "attn_norm.weight") return pre + "norm.weight";
  static const std::pair<const char*, const char*> map[] = {
      {"ssm_in.", "in_proj."}, {"ssm_conv1d.", "conv1d."}, {"ssm_x.", "x_proj."},
      {"ssm_dt.", "dt_proj."}, {"ssm_out.", "out_proj."},
  };
  for (const auto& [g, h] : map)
    if (rest.rfind(g, 0) == 0) return pre + "mixer." + h + rest.substr(std::strlen(g));
  if (rest == "ssm_a") return pre + "mixer.A_log";
  if (rest == "ssm_d") return pre + "mixer.D";
  return n;
}

/// transformers' Mamba2ForCausalLM name of a Mamba2 parameter (the name itself when unknown).
inline std::string mamba2_hf_name(const std::string& n) {
  if (n == "token_embd.weight") return "backbone.embeddings.weight";
  if (n == "output_norm.weight") return "backbone.norm_f.weight";
  if (n == "output.weight") return "lm_head.weight";
  if (n.rfind("blk.", 0) != 0) return n;
  const std::size_t dot = n.find('.', 4);
  const std::string pre = "backbone.layers." + n.substr(4, dot - 4) + ".";
  const std::string rest = n.substr(dot + 1);
  if (rest == "attn_norm.weight") return pre + "norm.weight";
  static const std::pair<const char*, const char*> map[] = {
      {"ssm_in.weight", "in_proj.weight"},
      {"ssm_conv1d.weight", "conv1d.weight"},
      {"ssm_conv1d.bias", "conv1d.bias"},
      {"ssm_dt.bias", "dt_bias"},
      {"ssm_a", "A_log"},
      {"ssm_d", "D"},
      {"ssm_norm.weight", "norm.weight"},
      {"ssm_out.weight", "out_proj.weight"},
  };
  for (const auto& [g, h] : map)
    if (rest == g) return pre + "mixer." + h;
  return n;
}

}  // namespace tessel::io::detail
