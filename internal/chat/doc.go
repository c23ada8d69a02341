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
// Messages reach the template as strings: text parts are concatenated;
// for a vision model (PrepareWith with Options.Images) each image part is
// decoded (DecodeImage: base64 data: URIs within byte and pixel limits)
// and stands in the text as ImageMarker, which TokenizePrompt turns into
// engine.ImageToken; otherwise image parts are refused with a 400, and
// audio or file parts always are. The "developer" role is passed as "system". Tool-call
// arguments are passed as objects, or as JSON text to templates that
// concatenate them (found by rendering a probe conversation at compile
// time); templates that insist on 9-character call ids (Mistral) get the
// client's ids mapped onto such ids.
//
// The jinja package's own whitespace handling trims across {{ }} tags in
// some cases (v1.8.0), so templates are normalised first: Jinja2's
// trim_blocks/lstrip_blocks and "-"/"+" markers are applied here, and the
// rendering is checked byte for byte against Python Jinja2
// (testdata/render_reference.py writes the goldens).
//
// The prompt is meant to be tokenized with special-token parsing, as
// llama.cpp's server does, so special-token text typed by a client is
// read as that token.
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
// calls; a forced tool_choice takes precedence over it. A template that
// thinks keeps an optional think block in front of every grammar
// (mandatory to close when the prompt opened it). Schemas are converted by
// the engine (llama.cpp's json_schema_to_grammar) and their rules renamed
// so several compose under one root.
//
// In "auto" mode with parallel_tool_calls false, the Hermes format stops
// generation at the first </tool_call>. The built-in template adds
// <|im_end|> and <|im_start|> as stops, since a model without a template
// has no end-of-turn token for them.
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
// its start (see Parser). Calls are also recognized without their opening
// tag at the start of the answer ({"name":…} objects, Mistral [{…}] arrays
// and name{…}), because an engine that leaves control tokens out of its text
// drops <|python_tag|>, [TOOL_CALLS] and [ARGS]; only objects naming a
// declared tool count. Whitespace next to tags and calls is not content.
//
// # Sampling
//
// Omitted sampling fields take llama.cpp server defaults, not OpenAI's:
// temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no repeat penalty.
// Small local models degrade badly when sampled at temperature 1 without
// truncation, and users of local models expect llama.cpp behavior. Values a
// client sends are honored exactly (temperature 0 is greedy).
package chat
