package transform

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
	"github.com/brokerfs/brokerfs/helperproc"
)

// helperScript is the Python side of the protocol; see its docstring.
//
//go:embed helper.py
var helperScript string

// PythonOptions configure the Python helper.
type PythonOptions struct {
	// Python is the interpreter (default "python3", found on PATH).
	Python string
	// Funcs maps document kinds to the import paths of their functions
	// ("package.module.function", or "package.module:function").
	Funcs map[string]string
	// Env is the helper's environment (nil: brokerfs's own, PYTHONPATH included).
	Env []string
	// Timeout bounds one document's transform (default 10 s).
	Timeout time.Duration
	// MaxBytes bounds a document sent to the helper and one it returns, as JSON (default
	// DefaultMaxBytes).
	MaxBytes int
	// Logger gets what the helper writes to stderr (print() in a transform), a line at a time.
	Logger *slog.Logger
}

// DefaultMaxBytes bounds a document that a transform is given or returns, as JSON.
const DefaultMaxBytes = 16 << 20

// Python is a running transform helper: one long-lived interpreter that imported the
// functions and transforms documents one at a time (package helperproc manages the process:
// a helper that crashes or hangs is killed and started again for the next document).
type Python struct {
	o      PythonOptions
	proc   *helperproc.Process
	digest string // of the functions' names and their modules' source files
}

var importPath = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*[.:][A-Za-z_][A-Za-z0-9_]*$`)

// ParseFlag parses the value of --transform KIND=IMPORT.PATH.
func ParseFlag(s string) (kind, path string, err error) {
	kind, path, ok := strings.Cut(s, "=")
	kind, path = strings.TrimSpace(kind), strings.TrimSpace(path)
	if !ok || kind == "" || path == "" {
		return "", "", fmt.Errorf("--transform %q: want KIND=package.module.function", s)
	}
	if !isKind(kind) {
		return "", "", fmt.Errorf("--transform %q: unknown kind %q: want start, stop, descriptor or resource", s, kind)
	}
	if !importPath.MatchString(path) {
		return "", "", fmt.Errorf("--transform %q: %q is not an import path package.module.function", s, path)
	}
	return kind, path, nil
}

// StartPython starts the helper and checks that it imported every function: a module that
// is missing or fails to import is an error now, not a log line per document later.
func StartPython(ctx context.Context, o PythonOptions) (*Python, error) {
	if o.Python == "" {
		o.Python = "python3"
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	kinds := make([]string, 0, len(o.Funcs))
	for k, p := range o.Funcs {
		if !isKind(k) {
			return nil, fmt.Errorf("transform %s=%s: unknown kind %q", k, p, k)
		}
		if !importPath.MatchString(p) {
			return nil, fmt.Errorf("transform %s=%s: not an import path package.module.function", k, p)
		}
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	cmd := []string{o.Python, "-c", helperScript}
	for _, k := range kinds {
		cmd = append(cmd, k+"="+o.Funcs[k])
	}
	py := &Python{o: o, proc: helperproc.New(helperproc.Options{
		Command: cmd,
		Env:     append(append([]string(nil), o.Env...), "PYTHONIOENCODING=utf-8", "PYTHONUNBUFFERED=1"),
		Timeout: o.Timeout,
		// Starting the interpreter and importing the modules (numpy, say) is not the
		// transform's time; the helper starts once, and again after a crash.
		StartTimeout: 60 * time.Second,
		MaxBytes:     int64(o.MaxBytes),
		Stderr:       &lineLogger{log: o.Logger},
	})}
	r, err := py.proc.Call(ctx, []byte(`{"protocol": 1, "op": "hello"}`+"\n"))
	if err != nil {
		py.proc.Close()
		return nil, fmt.Errorf("transform helper (%s): %w", o.Python, err)
	}
	var hello struct {
		Protocol int
		Digest   string
	}
	if err := json.Unmarshal(r.Body, &hello); err != nil || hello.Protocol != 1 || hello.Digest == "" {
		py.proc.Close()
		return nil, fmt.Errorf("transform helper (%s): bad hello %q", o.Python, helperproc.Clip(r.Body))
	}
	py.digest = hello.Digest
	return py, nil
}

// has reports whether the helper has a function for kind.
func (py *Python) has(kind string) bool { return py != nil && py.o.Funcs[kind] != "" }

// transform sends doc (a generic document) to kind's function and returns what it returned.
func (py *Python) transform(ctx context.Context, kind string, doc map[string]any) (map[string]any, error) {
	body := catalog.AppendJSON(nil, doc)
	if len(body) > py.o.MaxBytes {
		return nil, fmt.Errorf("document of %d bytes as JSON, more than the %d a transform may be sent", len(body), py.o.MaxBytes)
	}
	req := make([]byte, 0, len(body)+64)
	req = append(req, `{"protocol": 1, "op": "transform", "kind": `...)
	req = catalog.AppendJSONString(req, kind)
	req = append(req, `, "doc": `...)
	req = append(req, body...)
	req = append(req, "}\n"...)
	r, err := py.proc.Call(ctx, req)
	if err != nil {
		var answer *helperproc.AnswerError
		if errors.As(err, &answer) {
			return nil, fmt.Errorf("%s: %s", py.o.Funcs[kind], answer.Msg)
		}
		return nil, fmt.Errorf("%s: transform helper: %w", py.o.Funcs[kind], err)
	}
	out, err := jsonl.DecodeObject(r.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: bad output %q: %v", py.o.Funcs[kind], helperproc.Clip(r.Body), err)
	}
	return out, nil
}

// describe is the helper's part of the transforms' digest.
func (py *Python) describe() string {
	if py == nil {
		return ""
	}
	var b strings.Builder
	kinds := make([]string, 0, len(py.o.Funcs))
	for k := range py.o.Funcs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "%s=%s\n", k, py.o.Funcs[k])
	}
	fmt.Fprintf(&b, "sources %s\n", py.digest)
	return b.String()
}

// Close ends the helper.
func (py *Python) Close() error {
	if py == nil {
		return nil
	}
	return py.proc.Close()
}

// lineLogger logs what the helper writes to stderr, one line at a time (at most 1 KiB a line).
type lineLogger struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte // an unfinished line; guarded by mu
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := max(1024-len(l.buf), 0)
			l.buf = append(l.buf, p[:min(len(p), room)]...)
			break
		}
		room := max(1024-len(l.buf), 0)
		l.buf = append(l.buf, p[:min(i, room)]...)
		if line := strings.TrimSpace(string(l.buf)); line != "" {
			l.log.Info("transform helper says", "line", line)
		}
		l.buf = l.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}
