// Package mongotest runs a real MongoDB-compatible server for tests: FerretDB v1.24.2 over
// SQLite, built once by scripts/ferretdb.sh (or taken from $BROKERFS_FERRETDB) and started on
// a free 127.0.0.1 port with its data in the test's temporary directory.
//
// FerretDB differs from MongoDB in ways tests must stay within: it refuses nested arrays
// ([[1, 2]]) and NaN and infinite doubles, and it scans collections instead of using indexes.
package mongotest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// startTimeout bounds how long a started server may take to answer a ping.
const startTimeout = 30 * time.Second

// Server is a FerretDB process started by Start. Its methods may be called from one
// goroutine at a time.
type Server struct {
	t    testing.TB
	bin  string
	dir  string // SQLite data directory
	port int

	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closed when cmd has exited
	logs *syncBuffer   // the process's output, shown when it fails
}

// Start starts a FerretDB server for the test and stops it when the test ends. It fails the
// test (it does not skip it) when the server cannot be built or started.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("mongotest: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop) // registered after TempDir, so it runs before the directory goes
	var lastErr error
	for range 3 { // the port may be taken between choosing and binding it
		if s.port, err = freePort(); err != nil {
			t.Fatalf("mongotest: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("mongotest: %v", lastErr)
	return nil
}

// URI returns the URI of database db on the server.
func (s *Server) URI(db string) string {
	return fmt.Sprintf("mongodb://127.0.0.1:%d/%s", s.port, db)
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Stop stops the server process (SIGTERM, then SIGKILL after 5 s) and waits for it to exit.
// Its data stays, for Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Restart starts the server again on the same port with the same data, after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("mongotest: restart: %v", err)
	}
}

// start runs the binary and waits until it answers a ping.
func (s *Server) start() error {
	s.logs = &syncBuffer{}
	cmd := exec.Command(s.bin,
		"--listen-addr="+s.Addr(),
		"--handler=sqlite",
		"--sqlite-url=file:"+s.dir+"/",
		"--debug-addr=-",
		"--telemetry=disable",
		"--log-level=error",
	)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	setParentDeath(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	if err := s.waitReady(); err != nil {
		s.Stop()
		return fmt.Errorf("ferretdb on %s: %w; output:\n%s", s.Addr(), err, s.logs.String())
	}
	return nil
}

func (s *Server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(s.URI("admin")).
		SetServerSelectionTimeout(time.Second).SetTimeout(time.Second))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	for {
		err := client.Ping(ctx, nil)
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("exited before answering a ping")
		case <-ctx.Done():
			return fmt.Errorf("no answer to a ping within %v: %w", startTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Binary returns the path of the FerretDB binary: $BROKERFS_FERRETDB if set, else what
// scripts/ferretdb.sh builds (once per process; the script caches across processes).
func Binary() (string, error) {
	if bin := os.Getenv("BROKERFS_FERRETDB"); bin != "" {
		return bin, nil
	}
	buildOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		var stderr bytes.Buffer
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "ferretdb.sh"))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			buildErr = fmt.Errorf("scripts/ferretdb.sh: %w\n%s", err, stderr.String())
			return
		}
		buildBin = string(bytes.TrimSpace(out))
	})
	return buildBin, buildErr
}

// repoRoot finds the directory holding scripts/ferretdb.sh, upwards from this source file
// (or, when built with -trimpath, from the working directory: the package under test).
func repoRoot() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "scripts", "ferretdb.sh")); err == nil {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("cannot find scripts/ferretdb.sh above %q", starts)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 { // keep the first MiB: enough to say why it failed
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
