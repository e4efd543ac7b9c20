package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTiledAPIKey(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "TILED_API_KEY" {
				return v
			}
			return ""
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte("  s3cret \nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, env, want string
		fails           bool
	}{
		{"", "fromenv", "fromenv", false},
		{file, "fromenv", "s3cret", false},
		{empty, "", "", true},
		{filepath.Join(dir, "missing"), "", "", true},
	} {
		got, err := tiledAPIKey(tc.file, env(tc.env))
		if got != tc.want || (err != nil) != tc.fails {
			t.Errorf("tiledAPIKey(%q, %q) = %q, %v", tc.file, tc.env, got, err)
		}
	}
}

// TestTiledUnauthorized: ls of a server that wants a key fails at once, saying how to pass
// one, and shows neither the key nor anything but the URL.
func TestTiledUnauthorized(t *testing.T) {
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		_, _ = w.Write([]byte(`{"detail":"Invalid API key"}`))
	}))
	defer srv.Close()
	t.Setenv("TILED_API_KEY", "wrongkey")
	var out, errb bytes.Buffer
	code := run([]string{"ls", "--timeout", "2s", srv.URL + "/api/v1"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "401") || !strings.Contains(errb.String(), "TILED_API_KEY or --api-key-file") || strings.Contains(errb.String(), "wrongkey") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	if len(auth) != 1 || auth[0] != "Apikey wrongkey" {
		t.Errorf("requests with Authorization %q, want one with the key", auth)
	}
	if code := run([]string{"ls", srv.URL + "/api/v1?api_key=s3cret"}, &out, &errb); code == 0 || strings.Contains(errb.String(), "s3cret") {
		t.Errorf("a key in the URL: exit %d, stderr %q", code, errb.String())
	}
}
