package helperproc

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// script answers requests by their text, as a helper program would.
const script = `
while IFS= read -r line; do
  case "$line" in
    *ok*) printf '{"size": 5}\nhello' ;;
    *err*) printf '{"error": "nope", "exit": 66}\n' ;;
    *unsup*) printf '{"unsupported": true}\n' ;;
    *big*) printf '{"size": 100}\n' ;;
    *garbage*) printf 'garbage\n' ;;
    *sleep*) sleep 30 ;;
    *die*) echo "dying now" >&2; exit 3 ;;
    *pid*) p=$$; printf '{"size": %d}\n%s' ${#p} "$p" ;;
  esac
done
`

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestProcess(t *testing.T) {
	var stderr lockedBuf
	p := New(Options{Command: []string{"/bin/sh", "-c", script}, Timeout: 2 * time.Second, StartTimeout: 10 * time.Second, MaxBytes: 50, Stderr: &stderr})
	defer p.Close()
	ctx := context.Background()
	call := func(req string) (Reply, error) { return p.Call(ctx, []byte(req+"\n")) }
	pid := func() string {
		r, err := call("pid")
		if err != nil {
			t.Fatal(err)
		}
		return string(r.Body)
	}
	if r, err := call("ok"); err != nil || string(r.Body) != "hello" {
		t.Errorf("ok: %q %v", r.Body, err)
	}
	first := pid()
	var answer *AnswerError
	if _, err := call("err"); !errors.As(err, &answer) || answer.Msg != "nope" || answer.Exit != 66 {
		t.Errorf("err: %v", err)
	}
	if r, err := call("unsup"); err != nil || !r.Unsupported {
		t.Errorf("unsup: %+v %v", r, err)
	}
	if pid() != first {
		t.Error("an answered error or unsupported restarted the program")
	}
	for _, c := range []struct{ req, want string }{
		{"big", "response of 100 bytes, more than 50"},
		{"garbage", `bad response header "garbage"`},
		{"sleep", "timed out after 2s"},
		{"die", "no response (stdout closed) (process ended: exit status 3: dying now)"},
	} {
		before := pid()
		if _, err := call(c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.req, err, c.want)
		}
		if after := pid(); after == before {
			t.Errorf("%s: the program was not restarted", c.req)
		}
	}
	if !strings.Contains(stderr.String(), "dying now") {
		t.Errorf("stderr: %q", stderr.String())
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Call(cctx, []byte("ok\n")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	p.Close()
	if _, err := call("ok"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// TestStartTimeout: the call that starts the program may take StartTimeout longer.
func TestStartTimeout(t *testing.T) {
	slow := []string{"/bin/sh", "-c", "sleep 1; " + script}
	p := New(Options{Command: slow, Timeout: 200 * time.Millisecond, StartTimeout: 20 * time.Second})
	defer p.Close()
	if r, err := p.Call(context.Background(), []byte("ok\n")); err != nil || string(r.Body) != "hello" {
		t.Errorf("with StartTimeout: %q %v", r.Body, err)
	}
	q := New(Options{Command: slow, Timeout: 200 * time.Millisecond})
	defer q.Close()
	if _, err := q.Call(context.Background(), []byte("ok\n")); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("without StartTimeout: %v", err)
	}
}
