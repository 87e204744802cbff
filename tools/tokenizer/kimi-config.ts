/**
 * Kimi's special-token layout (spec §6) as offsets from the first special id, and the HF-style
 * tokenizer_config.json that names them. The bundled tokenizer uses the same offsets as the real
 * checkpoint, so code that looks specials up by name works with both.
 */
export const KIMI_SPECIAL_OFFSETS: readonly (readonly [number, string])[] = [
  [0, '[BOS]'],
  [1, '[EOS]'],
  [2, '<|im_end|>'],
  [3, '<|im_user|>'],
  [4, '<|im_assistant|>'],
  [6, '<|start_header_id|>'],
  [7, '<|end_header_id|>'],
  [9, '[EOT]'],
  [10, '<|im_system|>'],
  [11, '<|tool_calls_section_begin|>'],
  [12, '<|tool_calls_section_end|>'],
  [13, '<|tool_call_begin|>'],
  [14, '<|tool_call_argument_begin|>'],
  [15, '<|tool_call_end|>'],
  [17, '<|im_middle|>'],
  [254, '[UNK]'],
  [255, '[PAD]'],
];

/**
 * Kimi-K2-family chat format: turns are `<|im_{role}|>{role}<|im_middle|>{content}<|im_end|>` with
 * no newlines between them and no [BOS]; tool results are system turns named "tool". No default
 * system prompt is injected (the real template's default is uncertain, spec §6).
 */
export const KIMI_CHAT_TEMPLATE =
  "{%- for message in messages -%}" +
  "{%- if message['role'] == 'system' -%}<|im_system|>system<|im_middle|>" +
  "{%- elif message['role'] == 'user' -%}<|im_user|>user<|im_middle|>" +
  "{%- elif message['role'] == 'assistant' -%}<|im_assistant|>assistant<|im_middle|>" +
  "{%- elif message['role'] == 'tool' -%}<|im_system|>tool<|im_middle|>" +
  "{%- else -%}<|im_system|>{{ message['role'] }}<|im_middle|>" +
  "{%- endif -%}{{ message['content'] }}<|im_end|>" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}<|im_assistant|>assistant<|im_middle|>{%- endif -%}";

export function kimiTokenizerConfig(base: number, modelMaxLength: number): object {
  const added: Record<string, object> = {};
  for (const [offset, content] of KIMI_SPECIAL_OFFSETS) {
    added[String(base + offset)] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  }
  return {
    added_tokens_decoder: added,
    bos_token: '[BOS]',
    eos_token: '<|im_end|>',
    pad_token: '[PAD]',
    unk_token: '[UNK]',
    additional_special_tokens: ['<|im_end|>', '<|im_user|>', '<|im_assistant|>', '<|im_system|>', '<|im_middle|>'],
    model_max_length: modelMaxLength,
    tokenizer_class: 'TikTokenTokenizer',
    chat_template: KIMI_CHAT_TEMPLATE,
  };
}
