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
