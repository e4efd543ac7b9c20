package external

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/handlers/npy"
	"github.com/brokerfs/brokerfs/helperproc"
)

// Options configure an external handler.
type Options struct {
	// Spec is the resource spec the handler is registered for; requests carry it.
	Spec string
	// Serve keeps one process per open resource running (serve mode) instead of starting
	// one per call (exec mode). See the package documentation.
	Serve bool
	// Timeout bounds each call (default 60 s).
	Timeout time.Duration
	// MaxBytes bounds a response (default 4 GiB).
	MaxBytes int64
	// Env is added to the environment the program inherits (KEY=VALUE).
	Env []string
	// Dir is the program's working directory (default: brokerfs's).
	Dir string
}

// ErrHandler means an external handler failed: it exited non-zero, answered with an error,
// broke the protocol or timed out. The error text says which and carries its message.
var ErrHandler = errors.New("external handler failed")

// Exit statuses with a meaning (sysexits.h).
const (
	exitNoInput  = 66 // EX_NOINPUT: a file is missing
	exitTempFail = 75 // EX_TEMPFAIL: try again
)

// New returns the opener of resources read by the external program command (argv[0] and
// its arguments).
func New(command []string, o Options) handlers.Opener {
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 4 << 30
	}
	command = append([]string(nil), command...)
	return func(_ context.Context, path string, kw map[string]any) (handlers.Handler, error) {
		if len(command) == 0 {
			return nil, fmt.Errorf("external handler %s: empty command", o.Spec)
		}
		h := &handler{cmd: command, o: o, path: path, kw: kw}
		if o.Serve {
			h.proc = helperproc.New(helperproc.Options{Command: command, Env: h.env("serve"), Dir: o.Dir, Timeout: o.Timeout, MaxBytes: o.MaxBytes})
		}
		return h, nil
	}
}

type handler struct {
	cmd  []string
	o    Options
	path string
	kw   map[string]any
	proc *helperproc.Process // serve mode: the resource's server process
}

// request is one call's JSON.
func (h *handler) request(op string, datum map[string]any, list []map[string]any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"protocol":1,"op":`)
	writeJSON(&b, op)
	b.WriteString(`,"spec":`)
	writeJSON(&b, h.o.Spec)
	b.WriteString(`,"path":`)
	writeJSON(&b, h.path)
	b.WriteString(`,"resource_kwargs":`)
	if err := writeValue(&b, orEmpty(h.kw)); err != nil {
		return nil, err
	}
	if list != nil {
		b.WriteString(`,"datum_kwargs_list":[`)
		for i, kw := range list {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeValue(&b, orEmpty(kw)); err != nil {
				return nil, err
			}
		}
		b.WriteByte(']')
	} else {
		b.WriteString(`,"datum_kwargs":`)
		if err := writeValue(&b, orEmpty(datum)); err != nil {
			return nil, err
		}
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// reply is a call's outcome: the payload, or that the program does not implement the op.
type reply struct {
	body        []byte
	unsupported bool
}

func (h *handler) call(ctx context.Context, op string, datum map[string]any, list []map[string]any) (reply, error) {
	req, err := h.request(op, datum, list)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", h.name(), op, err)
	}
	if err := ctx.Err(); err != nil {
		return reply{}, err
	}
	var r reply
	if h.o.Serve {
		r, err = h.serve(ctx, req)
	} else {
		r, err = h.exec(ctx, req)
	}
	if err != nil {
		return reply{}, fmt.Errorf("%s %s %s %v: %w", h.name(), op, h.path, datumText(datum, list), err)
	}
	return r, nil
}

func (h *handler) name() string { return fmt.Sprintf("external handler %s (%s)", h.o.Spec, h.cmd[0]) }

func datumText(datum map[string]any, list []map[string]any) string {
	if list != nil {
		return fmt.Sprintf("%d datums", len(list))
	}
	b, _ := json.Marshal(datum)
	return string(b)
}

func (h *handler) env(mode string) []string {
	return append(append(os.Environ(), "BROKERFS_HANDLER_PROTOCOL=1", "BROKERFS_HANDLER_MODE="+mode), h.o.Env...)
}

// exec runs one process for one call.
func (h *handler) exec(ctx context.Context, req []byte) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.cmd[0], h.cmd[1:]...)
	setGroup(cmd)
	cmd.Env = h.env("exec")
	cmd.Dir = h.o.Dir
	cmd.Stdin = bytes.NewReader(req)
	stdout := &capped{max: h.o.MaxBytes}
	stderr := &helperproc.Tail{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return reply{}, fmt.Errorf("timed out after %v%s: %w", h.o.Timeout, stderr.LastLine(": "), ErrHandler)
	case stdout.over:
		return reply{}, fmt.Errorf("response larger than %d bytes: %w", h.o.MaxBytes, ErrHandler)
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Exited() {
			return reply{}, exitError(ee.ExitCode(), stderr.LastLine(""))
		}
		return reply{}, fmt.Errorf("%v%s: %w", err, stderr.LastLine(": "), ErrHandler)
	}
	body := stdout.Bytes()
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		var m struct {
			Error       *string
			Unsupported bool
			Exit        int
		}
		if json.Unmarshal(t, &m) == nil {
			if m.Unsupported {
				return reply{unsupported: true}, nil
			}
			if m.Error != nil {
				return reply{}, answerError(*m.Error, m.Exit)
			}
		}
	}
	return reply{body: body}, nil
}

// exitError is the error of a program that exited with status code: 66 wraps
// fs.ErrNotExist and 75 EAGAIN, which callers retry.
func exitError(code int, msg string) error {
	if msg == "" {
		msg = "(nothing on stderr)"
	}
	err := fmt.Errorf("exit status %d: %s: %w", code, msg, ErrHandler)
	switch code {
	case exitNoInput:
		return fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	case exitTempFail:
		return fmt.Errorf("%w (%w)", err, syscall.EAGAIN)
	}
	return err
}

// answerError is the error of an {"error": ...} answer.
func answerError(msg string, exit int) error {
	err := fmt.Errorf("%s: %w", msg, ErrHandler)
	switch exit {
	case exitNoInput:
		return fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	case exitTempFail:
		return fmt.Errorf("%w (%w)", err, syscall.EAGAIN)
	}
	return err
}

func (h *handler) Read(ctx context.Context, kw map[string]any) (*catalog.NDArray, error) {
	r, err := h.call(ctx, "read", kw, nil)
	if err != nil {
		return nil, err
	}
	if r.unsupported {
		return nil, fmt.Errorf("%s: read: answered unsupported: %w", h.name(), ErrHandler)
	}
	a, err := npy.Read(bytes.NewReader(r.body))
	if err != nil {
		return nil, fmt.Errorf("%s read %s %v: response is not a .npy file (%v): %w", h.name(), h.path, datumText(kw, nil), err, ErrHandler)
	}
	return a, nil
}

func (h *handler) Describe(ctx context.Context, kw map[string]any) (string, []int, error) {
	r, err := h.call(ctx, "describe", kw, nil)
	if err != nil {
		return "", nil, err
	}
	if r.unsupported {
		a, err := h.Read(ctx, kw)
		if err != nil {
			return "", nil, err
		}
		return a.Dtype, a.Shape, nil
	}
	var d struct {
		Dtype string
		Shape []int
	}
	if err := json.Unmarshal(r.body, &d); err != nil {
		return "", nil, fmt.Errorf("%s describe: bad response %q: %v: %w", h.name(), clip(r.body), err, ErrHandler)
	}
	dt, _, _, err := npy.ParseDescr(d.Dtype)
	if err != nil {
		return "", nil, fmt.Errorf("%s describe: %w", h.name(), err)
	}
	for _, n := range d.Shape {
		if n < 0 {
			return "", nil, fmt.Errorf("%s describe: shape %v: %w", h.name(), d.Shape, ErrHandler)
		}
	}
	if d.Shape == nil {
		d.Shape = []int{}
	}
	return dt, d.Shape, nil
}

func (h *handler) Files(kws []map[string]any) ([]string, error) {
	if kws == nil {
		kws = []map[string]any{}
	}
	r, err := h.call(context.Background(), "files", nil, kws)
	if err != nil {
		return nil, err
	}
	if r.unsupported {
		return []string{h.path}, nil
	}
	var f struct{ Files []string }
	if err := json.Unmarshal(r.body, &f); err != nil {
		return nil, fmt.Errorf("%s files: bad response %q: %v: %w", h.name(), clip(r.body), err, ErrHandler)
	}
	return f.Files, nil
}

func (h *handler) Close() error {
	if h.proc != nil {
		return h.proc.Close()
	}
	return nil
}

func clip(b []byte) string { return helperproc.Clip(b) }

// capped is a buffer that refuses to grow past max.
type capped struct {
	bytes.Buffer
	max  int64
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if int64(c.Len())+int64(len(p)) > c.max {
		c.over = true
		return 0, errors.New("response too large")
	}
	return c.Buffer.Write(p)
}

// setGroup starts the program in a process group of its own and makes cancellation kill
// the whole group, so that a shell wrapper's children do not outlive a timeout.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
