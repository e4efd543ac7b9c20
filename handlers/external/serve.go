package external

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
)

var errClosed = errors.New("handler is closed")

// server is one serve-mode process.
type server struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	outR   *os.File
	stderr *tail
	done   chan struct{} // closed once the process has exited
}

func (h *handler) start() (*server, error) {
	cmd := exec.Command(h.cmd[0], h.cmd[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = h.env("serve")
	cmd.Dir = h.o.Dir
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
	s := &server{cmd: cmd, stdin: stdin, out: bufio.NewReaderSize(pr, 64<<10), outR: pr, stderr: &tail{}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
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
		return fmt.Sprintf(" (process ended: %v%s)", ps, s.stderr.lastLine(": "))
	}
	return ""
}

// serve makes one call to the resource's server process, starting it if needed. A process
// that breaks the protocol, dies or times out is killed; the next call starts another.
func (h *handler) serve(ctx context.Context, req []byte) (reply, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return reply{}, errClosed
	}
	if h.srv == nil {
		s, err := h.start()
		if err != nil {
			return reply{}, fmt.Errorf("start: %v: %w", err, ErrHandler)
		}
		h.srv = s
	}
	s := h.srv
	var timedOut, canceled atomic.Bool
	timer := time.AfterFunc(h.o.Timeout, func() { timedOut.Store(true); s.kill() })
	stopCtx := context.AfterFunc(ctx, func() { canceled.Store(true); s.kill() })
	r, answered, err := s.exchange(req, h.o.MaxBytes)
	timer.Stop()
	stopCtx()
	if err == nil {
		return r, answered
	}
	// The process is in an unknown state: end it (after seeing whether it ended by itself).
	ended := ""
	if !timedOut.Load() && !canceled.Load() {
		ended = s.exited()
	}
	s.kill()
	h.srv = nil
	_ = s.stop()
	switch {
	case timedOut.Load():
		return reply{}, fmt.Errorf("timed out after %v%s: %w", h.o.Timeout, s.stderr.lastLine(": "), ErrHandler)
	case canceled.Load():
		return reply{}, ctx.Err()
	}
	return reply{}, fmt.Errorf("%v%s: %w", err, ended, ErrHandler)
}

// exchange writes one request and reads its answer. answered is an error the program
// reported (the process stays); err a broken exchange.
func (s *server) exchange(req []byte, max int64) (r reply, answered, err error) {
	s.stderr.reset() // what it says from here on is about this request
	if _, err := s.stdin.Write(req); err != nil {
		return reply{}, nil, fmt.Errorf("write request: %v", err)
	}
	line, err := s.readLine(64 << 10)
	if err != nil {
		return reply{}, nil, err
	}
	var hdr struct {
		Size        *int64
		Error       *string
		Unsupported bool
		Exit        int
	}
	if err := json.Unmarshal(line, &hdr); err != nil {
		return reply{}, nil, fmt.Errorf("bad response header %q: %v", clip(line), err)
	}
	switch {
	case hdr.Unsupported:
		return reply{unsupported: true}, nil, nil
	case hdr.Error != nil:
		return reply{}, answerError(*hdr.Error, hdr.Exit), nil
	case hdr.Size == nil || *hdr.Size < 0:
		return reply{}, nil, fmt.Errorf("response header %q has no size", clip(line))
	case *hdr.Size > max:
		return reply{}, nil, fmt.Errorf("response of %d bytes, more than %d", *hdr.Size, max)
	}
	body := make([]byte, *hdr.Size)
	if _, err := io.ReadFull(s.out, body); err != nil {
		return reply{}, nil, fmt.Errorf("read %d-byte response: %v", *hdr.Size, err)
	}
	return reply{body: body}, nil, nil
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
