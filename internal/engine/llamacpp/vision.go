package llamacpp

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/engine/internal/sched"
)

// Images in a sequence.
//
// A request's prompt holds engine.ImageToken where each image goes. When a
// sequence starts, the worker has the projector preprocess every image
// into mtmd chunks (text tokens that frame the image, and image chunks of
// embedding rows) and splices them into the prompt. An image chunk's
// positions carry a negative id derived from the image's pixels, so the
// prefix reuse that compares a new prompt with a sequence's cache works
// for images too: an agent that resends a conversation with the same
// picture decodes it once. Only the image chunks past the reused prefix
// are encoded, at once, on the worker; their rows then go through the
// prefill like tokens, in a separate embedding batch.

// visionSpan is an image chunk's place in a sequence's expanded prompt.
type visionSpan struct {
	start, n int
	// rows are n embedding rows, present when the sequence has still to
	// decode the span.
	rows []float32
}

// expansion is a request's prompt with its images spliced in.
type expansion struct {
	prompt      []int
	spans       []visionSpan
	imageTokens int

	tok  []chunks // per image, until encoded
	from []struct{ img, chunk int }
}

func (e *expansion) free() {
	for _, c := range e.tok {
		c.free()
	}
	e.tok = nil
}

// expand preprocesses the request's images and builds the expanded
// prompt. The caller frees the expansion.
func (m *model) expand(req engine.GenerateRequest) (*expansion, error) {
	if m.proj == nil {
		return nil, fmt.Errorf("%w: this model does not accept images: it reads text only", engine.ErrInvalidRequest)
	}
	e := &expansion{prompt: make([]int, 0, len(req.Prompt))}
	ok := false
	defer func() {
		if !ok {
			e.free()
		}
	}()
	img := 0
	for _, t := range req.Prompt {
		if t != engine.ImageToken {
			e.prompt = append(e.prompt, t)
			continue
		}
		im := req.Images[img]
		c, err := m.proj.tokenize(im.Width, im.Height, im.RGB)
		if err != nil {
			return nil, fmt.Errorf("%w: image %d: %w", engine.ErrInvalidRequest, img, err)
		}
		e.tok = append(e.tok, c)
		pieces, err := c.pieces()
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", img, err)
		}
		id := imageID(im)
		for _, pc := range pieces {
			if !pc.isImage() {
				e.prompt = append(e.prompt, pc.tokens...)
				continue
			}
			e.spans = append(e.spans, visionSpan{start: len(e.prompt), n: pc.n})
			e.from = append(e.from, struct{ img, chunk int }{img, pc.chunk})
			for range pc.n {
				e.prompt = append(e.prompt, id-pc.chunk)
			}
			e.imageTokens += pc.n
		}
		img++
	}
	ok = true
	return e, nil
}

// imageID is a negative id for an image's positions, from its pixels; it
// is never engine.ImageToken and never a vocabulary token. Chunks of one
// image get ids below it.
func imageID(im engine.Image) int {
	h := fnv.New64a()
	var dims [16]byte
	binary.LittleEndian.PutUint64(dims[:8], uint64(im.Width))
	binary.LittleEndian.PutUint64(dims[8:], uint64(im.Height))
	_, _ = h.Write(dims[:])
	_, _ = h.Write(im.RGB)
	return -(1<<40 + int(h.Sum64()&(1<<60-1)))
}

// snap moves a reused prefix length back to the start of the image chunk
// it ends inside: a chunk is decoded whole (projectors with bidirectional
// image attention need that), and its rows are encoded together.
func (e *expansion) snap(keep int) int {
	for _, sp := range e.spans {
		if keep > sp.start && keep < sp.start+sp.n {
			return sp.start
		}
	}
	return keep
}

// encode runs the vision encoder for the chunks the sequence decodes,
// those ending after position from.
func (e *expansion) encode(p *projector, from int) error {
	for i := range e.spans {
		sp := &e.spans[i]
		if sp.start+sp.n <= from {
			continue
		}
		src := e.from[i]
		rows, err := p.encode(e.tok[src.img], src.chunk, sp.n)
		if err != nil {
			return fmt.Errorf("image %d: %w", src.img, err)
		}
		sp.rows = rows
	}
	return nil
}

// prefillRun is what a prefilling sequence decodes next within budget:
// n prompt positions, all text or all rows of one image chunk. A chunk
// with bidirectional attention goes in whole or waits for a step with
// room for it.
func (m *model) prefillRun(s *slot, budget int) (n int, image bool) {
	pos := len(s.cache)
	for _, sp := range s.spans {
		switch {
		case pos >= sp.start+sp.n:
			continue
		case pos >= sp.start:
			left := sp.start + sp.n - pos
			if m.proj.nonCausal && left > budget {
				return 0, true
			}
			return min(budget, left), true
		default:
			return min(budget, sp.start-pos), false
		}
	}
	return min(budget, len(s.pending)), false
}

// rowsAt returns the embedding rows of n image positions from pos.
func (m *model) rowsAt(s *slot, pos, n int) ([]float32, error) {
	for _, sp := range s.spans {
		if pos >= sp.start && pos+n <= sp.start+sp.n {
			if sp.rows == nil {
				return nil, fmt.Errorf("image rows at position %d were not encoded", pos)
			}
			off := (pos - sp.start) * m.proj.nEmbd
			return sp.rows[off : off+n*m.proj.nEmbd], nil
		}
	}
	return nil, fmt.Errorf("no image at positions %d–%d", pos, pos+n)
}

// textTokens is the prompt without image positions, for the repeat
// penalty.
func textTokens(prompt []int) []int {
	out := make([]int, 0, len(prompt))
	for _, t := range prompt {
		if t >= 0 {
			out = append(out, t)
		}
	}
	return out
}

// expandFor expands a request's images and checks that the result fits a
// sequence.
func (m *model) expandFor(r *sched.Request) (*expansion, error) {
	ex, err := m.expand(r.Gen)
	if err != nil {
		return nil, err
	}
	if len(ex.prompt) >= m.ctxLen {
		ex.free()
		return nil, fmt.Errorf("%w: the prompt takes %d positions (%d of them images), leaving no room in a context of %d",
			engine.ErrContextLengthExceeded, len(ex.prompt), ex.imageTokens, m.ctxLen)
	}
	if m.proj.nonCausal {
		// Such a chunk is decoded in one step, next to at most one token
		// of every other sequence.
		room := m.budget - m.cfg.Parallel
		for _, sp := range ex.spans {
			if sp.n > room {
				ex.free()
				return nil, fmt.Errorf("%w: an image takes %d positions, more than the %d one step decodes", engine.ErrInvalidRequest, sp.n, room)
			}
		}
	}
	return ex, nil
}

// decodeBatches decodes the step's image rows, then its tokens.
func (m *model) decodeBatches() error {
	if n := m.ebatchTokens(); n > 0 {
		if m.proj.nonCausal {
			m.cc.setCausal(false)
		}
		err := m.cc.decode(m.ebatch)
		if m.proj.nonCausal {
			m.cc.setCausal(true)
		}
		if err != nil {
			return err
		}
	}
	if m.batch.len() == 0 {
		return nil
	}
	return m.cc.decode(m.batch)
}

func (m *model) ebatchTokens() int {
	if m.ebatch == nil {
		return 0
	}
	return m.ebatch.len()
}
