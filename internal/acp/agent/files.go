package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	sdk "github.com/coder/acp-go-sdk"
)

// inside reports whether path is root or below it (both clean, absolute).
func inside(path, root string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// realPath resolves symlinks in the longest existing prefix of p, so a
// link inside the workspace cannot lead a tool out of it.
func realPath(p string) string {
	rest := ""
	cur := p
	for {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// resolve makes a tool's path absolute and checks that it stays inside
// the session's cwd or additional directories.
func (s *Session) resolve(p string) (string, error) {
	if p == "" {
		p = "."
	}
	p = strings.TrimPrefix(p, "file://")
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.Cwd, p)
	}
	p = filepath.Clean(p)
	real := realPath(p)
	for _, root := range append([]string{s.Cwd}, s.Dirs...) {
		root = filepath.Clean(root)
		if inside(p, root) && inside(real, realPath(root)) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is outside the workspace (%s); only paths inside it may be used", p, strings.Join(append([]string{s.Cwd}, s.Dirs...), ", "))
}

func (s *Session) rel(p string) string {
	if r, err := filepath.Rel(s.Cwd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// readText reads a file through the editor when it offers fs reads (it sees
// unsaved buffers), else from disk.
func (s *Session) readText(ctx context.Context, path string) (string, error) {
	if s.a.clientCaps().Fs.ReadTextFile {
		var resp sdk.ReadTextFileResponse
		err := s.a.conn.Call(ctx, sdk.ClientMethodFsReadTextFile, sdk.ReadTextFileRequest{SessionId: sdk.SessionId(s.ID), Path: path}, &resp)
		if err != nil {
			return "", fmt.Errorf("reading %s through the editor: %w", path, err)
		}
		return resp.Content, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return string(data), nil
}

// writeText writes through the editor when it offers fs writes, else to
// disk atomically.
func (s *Session) writeText(ctx context.Context, path, content string) error {
	if s.a.clientCaps().Fs.WriteTextFile {
		err := s.a.conn.Call(ctx, sdk.ClientMethodFsWriteTextFile, sdk.WriteTextFileRequest{SessionId: sdk.SessionId(s.ID), Path: path, Content: content}, nil)
		if err != nil {
			return fmt.Errorf("writing %s through the editor: %w", path, err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cortex-acp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.WriteString(content)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		_ = os.Remove(tmp.Name())
		return errors.Join(werr, cerr)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (s *Session) describeRead(r *toolRun) description {
	path, err := s.resolve(r.str("path"))
	d := description{title: "Read " + s.rel(path), kind: sdk.ToolKindRead, class: classRead, err: err}
	if err != nil {
		d.title = "Read " + r.str("path")
		return d
	}
	loc := sdk.ToolCallLocation{Path: path}
	if off := r.num("offset"); off > 0 {
		loc.Line = sdk.Ptr(off)
	}
	d.locations = []sdk.ToolCallLocation{loc}
	d.run = func(ctx context.Context) toolResult {
		text, err := s.readText(ctx, path)
		if err != nil {
			return failed("Reading %s: %v", s.rel(path), err)
		}
		if off, lim := r.num("offset"), r.num("limit"); off > 1 || lim > 0 {
			lines := strings.SplitAfter(text, "\n")
			start := max(off-1, 0)
			if start > len(lines) {
				start = len(lines)
			}
			end := len(lines)
			if lim > 0 && start+lim < end {
				end = start + lim
			}
			text = strings.Join(lines[start:end], "")
		}
		return toolResult{text: clip(text, 256<<10), content: []sdk.ToolCallContent{}}
	}
	return d
}

func (s *Session) describeEdit(ctx context.Context, r *toolRun) description {
	path, err := s.resolve(r.str("path"))
	verb := "Write"
	if r.call.Name == "edit_file" {
		verb = "Edit"
	}
	d := description{title: verb + " " + s.rel(path), kind: sdk.ToolKindEdit, class: classEdit, err: err}
	if err != nil {
		d.title = verb + " " + r.str("path")
		return d
	}
	d.key, d.path, d.what = path, path, "edits to "+s.rel(path)
	d.locations = []sdk.ToolCallLocation{{Path: path}}
	newText := r.str("content")
	if r.call.Name == "edit_file" {
		if r.str("old_string") == "" {
			d.err = errors.New("edit_file needs a non-empty old_string; use write_file to create a file")
			return d
		}
		if _, ok := r.args["new_string"].(string); !ok {
			d.err = errors.New("edit_file needs new_string")
			return d
		}
	} else if _, ok := r.args["content"].(string); !ok {
		d.err = errors.New("write_file needs content")
		return d
	}
	// The edit is computed before asking, so the permission request can
	// show the diff the user is approving.
	var oldText string
	var existed bool
	prepare := func(ctx context.Context) error {
		t, err := s.readText(ctx, path)
		switch {
		case err == nil:
			oldText, existed = t, true
		case errors.Is(err, fs.ErrNotExist) || (r.call.Name == "write_file" && !fileExists(path)):
			oldText, existed = "", false
		default:
			return err
		}
		if r.call.Name == "write_file" {
			return nil
		}
		if !existed {
			return fmt.Errorf("%s does not exist; use write_file to create it", s.rel(path))
		}
		old, repl := r.str("old_string"), r.str("new_string")
		n := strings.Count(oldText, old)
		switch {
		case n == 0:
			return fmt.Errorf("old_string was not found in %s; read the file and copy the text exactly", s.rel(path))
		case n > 1 && !r.flag("replace_all"):
			return fmt.Errorf("old_string matches %d places in %s; include more surrounding text to make it unique, or set replace_all", n, s.rel(path))
		case r.flag("replace_all"):
			newText = strings.ReplaceAll(oldText, old, repl)
		default:
			newText = strings.Replace(oldText, old, repl, 1)
		}
		return nil
	}
	if perr := prepare(ctx); perr != nil {
		d.err = perr
		return d
	}
	diff := func() []sdk.ToolCallContent {
		if existed {
			return []sdk.ToolCallContent{sdk.ToolDiffContent(path, newText, oldText)}
		}
		return []sdk.ToolCallContent{sdk.ToolDiffContent(path, newText)}
	}
	d.preview = diff()
	d.run = func(ctx context.Context) toolResult {
		// Again: the file may have changed while the user was asked.
		if err := prepare(ctx); err != nil {
			return failed("%v", err)
		}
		if err := s.writeText(ctx, path, newText); err != nil {
			return failed("Writing %s: %v", s.rel(path), err)
		}
		msg := fmt.Sprintf("Wrote %s (%d bytes).", s.rel(path), len(newText))
		if r.call.Name == "edit_file" {
			msg = fmt.Sprintf("Edited %s.", s.rel(path))
		}
		return toolResult{text: msg, content: diff()}
	}
	return d
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (s *Session) describeSearch(r *toolRun) description {
	path, err := s.resolve(r.str("path"))
	d := description{kind: sdk.ToolKindSearch, class: classRead, err: err}
	switch r.call.Name {
	case "list_dir":
		d.title, d.kind = "List "+s.rel(path), sdk.ToolKindRead
	case "glob":
		d.title = "Find " + r.str("pattern")
	case "grep":
		d.title = "Search for " + r.str("pattern")
	}
	if err != nil {
		return d
	}
	d.locations = []sdk.ToolCallLocation{{Path: path}}
	switch r.call.Name {
	case "list_dir":
		d.run = func(context.Context) toolResult {
			entries, err := os.ReadDir(path)
			if err != nil {
				return failed("Listing %s: %v", s.rel(path), err)
			}
			var b strings.Builder
			for _, e := range entries {
				b.WriteString(e.Name())
				if e.IsDir() {
					b.WriteString("/")
				}
				b.WriteString("\n")
			}
			if b.Len() == 0 {
				return toolResult{text: "(empty directory)"}
			}
			return toolResult{text: b.String()}
		}
	case "glob":
		re, err := globRegexp(r.str("pattern"))
		if err != nil {
			d.err = err
			return d
		}
		d.run = func(ctx context.Context) toolResult {
			var out []string
			walkFiles(ctx, path, func(p string) bool {
				rel, _ := filepath.Rel(path, p)
				if re.MatchString(filepath.ToSlash(rel)) {
					out = append(out, s.rel(p))
				}
				return len(out) < 500
			})
			sort.Strings(out)
			if len(out) == 0 {
				return toolResult{text: "No files match."}
			}
			return toolResult{text: strings.Join(out, "\n")}
		}
	case "grep":
		pat := r.str("pattern")
		if r.flag("ignore_case") {
			pat = "(?i)" + pat
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			d.err = fmt.Errorf("bad pattern: %w", err)
			return d
		}
		var only *regexp.Regexp
		if g := r.str("glob"); g != "" {
			if only, err = globRegexp(g); err != nil {
				d.err = err
				return d
			}
		}
		d.run = func(ctx context.Context) toolResult {
			var out []string
			walkFiles(ctx, path, func(p string) bool {
				rel, _ := filepath.Rel(path, p)
				if only != nil && !only.MatchString(filepath.ToSlash(rel)) && !only.MatchString(filepath.Base(p)) {
					return true
				}
				out = append(out, grepFile(p, s.rel(p), re, 200-len(out))...)
				return len(out) < 200
			})
			if len(out) == 0 {
				return toolResult{text: "No matches."}
			}
			return toolResult{text: strings.Join(out, "\n")}
		}
	}
	return d
}

// walkFiles visits regular files under root, skipping VCS and dependency
// directories, until visit returns false.
func walkFiles(ctx context.Context, root string, visit func(string) bool) {
	stop := errors.New("stop")
	_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || ctx.Err() != nil {
			if ctx.Err() != nil {
				return stop
			}
			return nil
		}
		if e.IsDir() {
			switch e.Name() {
			case ".git", "node_modules", ".hg", ".svn":
				return filepath.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		if !visit(p) {
			return stop
		}
		return nil
	})
}

func grepFile(path, shown string, re *regexp.Regexp, limit int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err != nil || st.Size() > 8<<20 {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() && len(out) < limit {
		n++
		line := sc.Text()
		if strings.IndexByte(line, 0) >= 0 {
			return nil
		}
		if re.MatchString(line) {
			out = append(out, fmt.Sprintf("%s:%d: %s", shown, n, clip(line, 300)))
		}
	}
	return out
}

// globRegexp compiles a glob: * and ? within a path segment, ** across
// segments, {a,b} alternatives. A pattern without / matches the base name
// at any depth.
func globRegexp(g string) (*regexp.Regexp, error) {
	if g == "" {
		return nil, errors.New("empty glob pattern")
	}
	var b strings.Builder
	b.WriteString("^")
	if !strings.Contains(g, "/") {
		b.WriteString("(?:.*/)?")
	}
	depth := 0
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch {
		case c == '*' && i+1 < len(g) && g[i+1] == '*':
			i++
			if i+1 < len(g) && g[i+1] == '/' {
				i++
				b.WriteString("(?:.*/)?")
			} else {
				b.WriteString(".*")
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '{':
			depth++
			b.WriteString("(?:")
		case c == '}' && depth > 0:
			depth--
			b.WriteString(")")
		case c == ',' && depth > 0:
			b.WriteString("|")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("bad glob %q: unbalanced {", g)
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
