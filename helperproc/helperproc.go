// Package helperproc runs a long-lived helper program that answers requests on its stdin and
// stdout: serve-mode external handlers (handlers/external) and the Python transform helper
// (catalog/transform) are both one of these.
//
// # Framing
//
// A request is one line of JSON. The program answers each request, in order, with one line
// of JSON, then a payload:
//
//	{"size": N}\n<N bytes>
//	{"error": "message", "exit": 66}\n          (no payload; "exit" optional)
//	{"unsupported": true}\n                     (no payload: the program does not do this)
//
// A Process starts its program at the first call, serialises calls, bounds each call by a
// timeout and each answer by a size, and kills a program that dies, breaks the framing, takes
// too long or is cancelled: that call fails, and the next call starts the program again. An
// {"error": ...} answer fails only that call (an *AnswerError); the program stays.
package helperproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configure a Process.
type Options struct {
	// Command is the program and its arguments (no shell).
	Command []string
	// Env is the program's whole environment (nil: brokerfs's own).
	Env []string
	// Dir is the program's working directory (default: brokerfs's).
	Dir string
	// Timeout bounds each call, from writing the request to reading the payload (default 60 s).
	Timeout time.Duration
	// StartTimeout is the extra time the call that starts the program may take: what the
	// program does before it reads its first request (an interpreter's imports).
	StartTimeout time.Duration
	// MaxBytes bounds a payload (default 4 GiB).
	MaxBytes int64
	// Stderr, if set, gets what the program writes to stderr (its last line goes into
	// errors anyway).
	Stderr io.Writer
}

// maxHeader bounds an answer's header line.
const maxHeader = 64 << 10

// ErrClosed is the error of a call to a closed Process.
var ErrClosed = errors.New("helper is closed")

// AnswerError is an {"error": ...} answer: the program reported that this request failed.
type AnswerError struct {
	Msg  string
	Exit int // the answer's "exit", 0 when it has none
}

func (e *AnswerError) Error() string { return e.Msg }

// Reply is an answer: its payload, or that the program does not implement the request.
type Reply struct {
	Body        []byte
	Unsupported bool
}

// Process is one helper program, started when first needed. It is safe for concurrent use;
// calls are serialised.
type Process struct {
	o Options

	mu     sync.Mutex // serialises calls; guards srv and closed
	srv    *server
	closed bool
}

// New returns a Process for o; nothing starts before the first Call.
func New(o Options) *Process {
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 4 << 30
	}
	o.Command = append([]string(nil), o.Command...)
	return &Process{o: o}
}

// Call sends one request (a line of JSON, ending in '\n') and returns the answer. An
// {"error": ...} answer is an *AnswerError; a cancelled ctx returns ctx.Err(); any other
// error means the exchange broke (the program is killed and restarted by the next call) and
// says how, with the last line the program wrote to stderr where that helps.
func (p *Process) Call(ctx context.Context, req []byte) (Reply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Reply{}, ErrClosed
	}
	if len(p.o.Command) == 0 {
		return Reply{}, errors.New("empty command")
	}
	if err := ctx.Err(); err != nil {
		return Reply{}, err
	}
	timeout := p.o.Timeout
	if p.srv == nil {
		s, err := p.start()
		if err != nil {
			return Reply{}, fmt.Errorf("start: %v", err)
		}
		p.srv = s
		timeout += p.o.StartTimeout
	}
	s := p.srv
	var timedOut, canceled atomic.Bool
	timer := time.AfterFunc(timeout, func() { timedOut.Store(true); s.kill() })
	stopCtx := context.AfterFunc(ctx, func() { canceled.Store(true); s.kill() })
	r, answered, err := s.exchange(req, p.o.MaxBytes)
	timer.Stop()
	stopCtx()
	if err == nil {
		if answered != nil {
			return Reply{}, answered
		}
		return r, nil
	}
	// The process is in an unknown state: end it (after seeing whether it ended by itself).
	ended := ""
	if !timedOut.Load() && !canceled.Load() {
		ended = s.exited()
	}
	s.kill()
	p.srv = nil
	_ = s.stop()
	switch {
	case timedOut.Load():
		return Reply{}, fmt.Errorf("timed out after %v%s", timeout, s.stderr.LastLine(": "))
	case canceled.Load():
		return Reply{}, ctx.Err()
	}
	return Reply{}, fmt.Errorf("%v%s", err, ended)
}

// Close ends the program (stdin closed, killed after 2 s) and refuses later calls.
func (p *Process) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.srv != nil {
		err := p.srv.stop()
		p.srv = nil
		return err
	}
	return nil
}

// server is one running program.
type server struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	outR   *os.File
	stderr *Tail
	done   chan struct{} // closed once the process has exited
}

func (p *Process) start() (*server, error) {
	cmd := exec.Command(p.o.Command[0], p.o.Command[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = p.o.Env
	cmd.Dir = p.o.Dir
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// stdout is a pipe of our own, so that Wait (run as soon as the process exits) does not
	// close it under a reader still taking the last response.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = pw
	s := &server{cmd: cmd, stdin: stdin, out: bufio.NewReaderSize(pr, 64<<10), outR: pr, stderr: &Tail{}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	if p.o.Stderr != nil {
		cmd.Stderr = io.MultiWriter(s.stderr, p.o.Stderr)
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	pw.Close()
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// kill kills the program's process group.
func (s *server) kill() {
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// stop closes stdin, gives the process 2 s to exit, then kills it.
func (s *server) stop() error {
	s.stdin.Close()
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
		s.kill()
		<-s.done
	}
	s.outR.Close()
	return nil
}

// exited describes how the process ended, if it has.
func (s *server) exited() string {
	select {
	case <-s.done:
	case <-time.After(100 * time.Millisecond):
		return ""
	}
	if ps := s.cmd.ProcessState; ps != nil {
		return fmt.Sprintf(" (process ended: %v%s)", ps, s.stderr.LastLine(": "))
	}
	return ""
}

// exchange writes one request and reads its answer. answered is an error the program
// reported (the process stays); err a broken exchange.
func (s *server) exchange(req []byte, max int64) (r Reply, answered, err error) {
	s.stderr.Reset() // what it says from here on is about this request
	if _, err := s.stdin.Write(req); err != nil {
		return Reply{}, nil, fmt.Errorf("write request: %v", err)
	}
	line, err := s.readLine(maxHeader)
	if err != nil {
		return Reply{}, nil, err
	}
	var hdr struct {
		Size        *int64
		Error       *string
		Unsupported bool
		Exit        int
	}
	if err := json.Unmarshal(line, &hdr); err != nil {
		return Reply{}, nil, fmt.Errorf("bad response header %q: %v", Clip(line), err)
	}
	switch {
	case hdr.Unsupported:
		return Reply{Unsupported: true}, nil, nil
	case hdr.Error != nil:
		return Reply{}, &AnswerError{Msg: *hdr.Error, Exit: hdr.Exit}, nil
	case hdr.Size == nil || *hdr.Size < 0:
		return Reply{}, nil, fmt.Errorf("response header %q has no size", Clip(line))
	case *hdr.Size > max:
		return Reply{}, nil, fmt.Errorf("response of %d bytes, more than %d", *hdr.Size, max)
	}
	body := make([]byte, *hdr.Size)
	if _, err := io.ReadFull(s.out, body); err != nil {
		return Reply{}, nil, fmt.Errorf("read %d-byte response: %v", *hdr.Size, err)
	}
	return Reply{Body: body}, nil, nil
}

// readLine reads one line of at most max bytes.
func (s *server) readLine(max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := s.out.ReadSlice('\n')
		line = append(line, frag...)
		if err == nil {
			return line, nil
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF {
				return nil, errors.New("no response (stdout closed)")
			}
			return nil, fmt.Errorf("read response: %v", err)
		}
		if len(line) > max {
			return nil, fmt.Errorf("response header longer than %d bytes", max)
		}
	}
}

// Tail keeps the last 8 KiB written to it: a program's stderr, for error messages.
type Tail struct {
	mu  sync.Mutex
	buf []byte // guarded by mu
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8192 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-8192:]...)
	}
	return len(p), nil
}

// Reset forgets what was written.
func (t *Tail) Reset() {
	t.mu.Lock()
	t.buf = t.buf[:0]
	t.mu.Unlock()
}

// LastLine returns the last non-empty line written, prefixed by sep, or "".
func (t *Tail) LastLine(sep string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if last == "" {
		return ""
	}
	return sep + last
}

// Clip shortens b to 200 bytes for an error message.
func Clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
