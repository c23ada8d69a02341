package localstack

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
)

// ChatMLTemplate is the chat template written into the generated models, so
// chat requests render as they would for a Qwen-style model.
const ChatMLTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

// LocalModel is a model file the local stack serves.
type LocalModel struct {
	// Name is the Model's metadata.name.
	Name string
	// File is the GGUF file's name in the cache directory.
	File string
	// Manifest is the Model manifest (YAML) serving it.
	Manifest string
}

// SeedCache puts the local stack's models into cacheDir: the tiny
// pretrained stories260K (copied from sharedModel when given and present)
// and two generated random-weight llamas with a chat template (their text
// is noise, but every API path works on them). Files already present are
// kept.
func SeedCache(cacheDir, sharedModel string) ([]LocalModel, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	var out []LocalModel
	stories := filepath.Join(cacheDir, "stories260K.gguf")
	if _, err := os.Stat(stories); err != nil && sharedModel != "" {
		if err := copyFile(sharedModel, stories); err != nil {
			return nil, fmt.Errorf("seeding stories260K: %w", err)
		}
	}
	if _, err := os.Stat(stories); err == nil {
		out = append(out, LocalModel{Name: "stories", File: "stories260K.gguf", Manifest: modelYAML(
			"stories", stories, "A tiny pretrained llama (TinyStories). Pinned: always loaded, never evicted.",
			"  servedNames: [stories, tinystories]\n  pinned: true\n  priority: 100\n  replicas: {min: 1, max: 2}\n  engine: {contextLength: 512, parallel: 4}\n")})
	}
	gens := []struct {
		name, doc, spec string
		p               ggufgen.LlamaParams
	}{
		{"chat-small", "A small generated chat model; scales to zero and loads on the first request.",
			"  servedNames: [chat-small, gpt-4o-mini]\n  priority: 10\n  keepAlive: 5m\n  replicas: {min: 0, max: 1}\n  engine: {contextLength: 1024, parallel: 2}\n",
			ggufgen.LlamaParams{Name: "chat-small", Layers: 4, Embd: 256, Heads: 4, FF: 768, Vocab: 2048, Context: 2048, WeightType: "f16", Seed: 7}},
		{"chat-large", "A larger generated chat model that does not fit beside everything else: watch evictions.",
			"  servedNames: [chat-large]\n  priority: 0\n  keepAlive: 2m\n  replicas: {min: 0, max: 1}\n  engine: {contextLength: 1024, parallel: 2}\n",
			ggufgen.LlamaParams{Name: "chat-large", Layers: 8, Embd: 512, Heads: 8, FF: 1536, Vocab: 4096, Context: 2048, WeightType: "f16", Seed: 11}},
	}
	for _, g := range gens {
		file := g.name + ".gguf"
		path := filepath.Join(cacheDir, file)
		if _, err := os.Stat(path); err != nil {
			g.p.ChatTemplate = ChatMLTemplate
			g.p.SpecialTokens = []string{"<|im_start|>", "<|im_end|>"}
			var buf bytes.Buffer
			if err := ggufgen.WriteRandomLlama(&buf, g.p); err != nil {
				return nil, fmt.Errorf("generating %s: %w", g.name, err)
			}
			if err := writeAtomic(path, buf.Bytes()); err != nil {
				return nil, err
			}
		}
		out = append(out, LocalModel{Name: g.name, File: file, Manifest: modelYAML(g.name, path, g.doc, g.spec)})
	}
	return out, nil
}

func modelYAML(name, path, doc, spec string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\napiVersion: cortex.helexa.ai/v1alpha1\nkind: Model\nmetadata:\n  name: %s\nspec:\n  source:\n    uri: file://%s\n%s", doc, name, path, spec)
	return b.String()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	return writeAtomic(to, data)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
