// Package wire is the root of cortex's dialect layer: the wire types of the
// APIs clients speak and the pure translations between them.
//
//   - openai: chat completions, completions, embeddings, models and errors;
//     what the neurons speak.
//   - anthropic: the Messages API and its translation to and from OpenAI
//     chat completions, streams included.
//   - responses: the OpenAI Responses API and its translation to and from
//     chat completions, streams included.
//   - sse: Server-Sent Events reading, writing and grammar checks.
//
// Nothing here does I/O beyond the io.Reader / io.Writer it is handed, so the
// gateway wires these pieces to HTTP and the neuron client.
//
// # Contract with the neuron
//
// The translations rely on a few OpenAI chat extensions the neuron honours:
//
//   - request chat_template_kwargs.enable_thinking (bool): passed to the chat
//     template; Anthropic thinking enabled/disabled and Responses
//     reasoning.effort "none" set it; absent means the model's default;
//   - request thinking_budget_tokens (int): the most tokens to think before
//     answering (Anthropic thinking.budget_tokens); may be ignored;
//   - choice / chunk-choice stop_sequence (string): the request stop string
//     that ended generation, sent with finish_reason "stop" only when a stop
//     string (not end-of-generation) ended it; without it Anthropic clients
//     see end_turn instead of stop_sequence;
//   - streams: reasoning_content deltas for thinking, tool calls streamed
//     one after another with index, and the first fragment of each carrying
//     id, type and function name; stream_options.include_usage honoured;
//     a failure after the stream began sent as data: {"error": {…}}.
//
// ssecheck.OpenAIChatStream checks the stream rules.
package wire

// Warning reports something in a client's request that cortex accepted but
// could not honour, such as a server-side tool it dropped. Translations
// return warnings rather than fail, so the gateway can log them (and, where a
// dialect has room for it, tell the client).
type Warning struct {
	// Param is the JSON path of the offending field, e.g. "tools[2]".
	Param string `json:"param,omitempty"`
	// Message says what was dropped or changed and why.
	Message string `json:"message"`
}

func (w Warning) String() string {
	if w.Param == "" {
		return w.Message
	}
	return w.Param + ": " + w.Message
}
