// Package chat turns an OpenAI chat request into what the engine needs and
// turns the engine's text back into an OpenAI answer. It is the neuron's
// chat layer and knows nothing about HTTP.
//
// # Flow of one request
//
//	tmpl, err := chat.ForModel(model.Info(), spec.ChatTemplate) // once per loaded model (cached)
//	p, err := tmpl.Prepare(req, model)                          // per request; *openai.Error → 400
//	tokens, err := model.Tokenize(p.Prompt, true, true)        // addSpecial, parseSpecial
//	parser := p.NewParser()
//	res, err := model.Generate(ctx, p.GenerateRequest(tokens), func(c engine.Chunk) error {
//		for _, ev := range parser.Feed(c.Text) { /* → SSE deltas */ }
//		return nil
//	})
//	for _, ev := range parser.Finish() { /* → last deltas */ }
//	out := parser.Result()                      // content, reasoning_content, tool_calls
//	finish := out.FinishReason(res.FinishReason) // "tool_calls" when calls were made
//
// # Templates
//
// Chat templates are the Hugging Face Jinja templates stored in a GGUF's
// tokenizer.chat_template, rendered in pure Go by github.com/ardanlabs/jinja
// with the context transformers provides: messages, tools,
// add_generation_prompt, bos_token, eos_token, raise_exception,
// strftime_now, a Python-compatible tojson, and chat_template_kwargs such as
// enable_thinking. A model without a template, or the override "chatml",
// gets a built-in ChatML template that describes tools in the Hermes style.
// Messages reach the template as strings: text parts are concatenated and
// image, audio or file parts are refused with a 400, because the engine is
// text-only.
//
// # Tool calls and reasoning
//
// The tool-call format is detected from the template: Hermes/Qwen
// (<tool_call>{"name":…,"arguments":…}</tool_call>), Llama 3 JSON
// ({"name":…,"parameters":…}) and Mistral ([TOOL_CALLS][{…}] or
// [TOOL_CALLS]name[ARGS]{…}); anything else uses Hermes. A leading
// <think>…</think> block (or a prompt that already opened one) becomes
// reasoning_content.
//
// tool_choice decides decoding:
//   - "auto" (the default with tools): free text; calls are parsed from it.
//   - "required": a GBNF grammar forces one call (with parallel_tool_calls,
//     up to MaxForcedCalls) in the model's own format, names fixed to the
//     declared tools and arguments constrained by each tool's JSON schema.
//   - a named function: the same, for exactly one call of that function.
//   - "none": tools are not rendered into the prompt and nothing is parsed
//     as a call, so the model answers in prose instead of emitting call
//     syntax that would leak into content.
//
// response_format json_object or json_schema constrains the content with a
// grammar; with tools in "auto" the grammar allows either that JSON or tool
// calls. A template that thinks keeps an optional think block in front of
// every grammar (mandatory to close when the prompt opened it).
//
// # Parsing output
//
// A Parser is fed the generated text as it arrives and returns events:
// content and reasoning deltas, and tool calls (start with id and name,
// argument fragments, end). It holds back only text that could still be the
// start of a tag or of a call, never the whole response. Arguments are
// streamed as compact JSON, so the fragments concatenate to exactly the
// final arguments string. A call that turns out malformed (auto mode) is
// given back as content, so no text is lost; a stream consumer has then seen
// its start (see Parser).
//
// # Sampling
//
// Omitted sampling fields take llama.cpp server defaults, not OpenAI's:
// temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no repeat penalty.
// Small local models degrade badly when sampled at temperature 1 without
// truncation, and users of local models expect llama.cpp behaviour. Values a
// client sends are honoured exactly (temperature 0 is greedy).
package chat
