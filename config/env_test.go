package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// testEnv is an Env whose every directory is under one temporary directory.
func testEnv(t *testing.T) Env {
	t.Helper()
	d := t.TempDir()
	return Env{
		Home:        filepath.Join(d, "home"),
		XDGDataHome: filepath.Join(d, "xdg"),
		VirtualEnv:  filepath.Join(d, "venv"),
		CondaPrefix: filepath.Join(d, "conda"),
		Root:        filepath.Join(d, "root"),
	}
}

// write creates path (and its directory) holding content.
func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSearchPath(t *testing.T) {
	tests := []struct {
		name string
		env  Env
		want []string
	}{
		{
			name: "home only",
			env:  Env{Home: "/h"},
			want: []string{"/h/.local/share/intake", "/usr/local/share/intake", "/h/.config/databroker", "/etc/databroker"},
		},
		{
			name: "everything",
			env: Env{Home: "/h", XDGDataHome: "/xdg", VirtualEnv: "/venv", CondaPrefix: "/conda",
				IntakePath: "/a:/b/cat.yml", ExtraDirs: []string{"/extra"}, Root: "/r"},
			want: []string{"/extra", "/xdg/intake", "/venv/share/intake", "/conda/share/intake",
				"/r/usr/local/share/intake", "/a", "/b/cat.yml",
				"/h/.config/databroker", "/venv/etc/databroker", "/conda/etc/databroker", "/r/etc/databroker"},
		},
		{
			name: "relative XDG_DATA_HOME is invalid and ignored",
			env:  Env{Home: "/h", XDGDataHome: "rel"},
			want: []string{"/h/.local/share/intake", "/usr/local/share/intake", "/h/.config/databroker", "/etc/databroker"},
		},
		{
			name: "no home",
			env:  Env{Root: "/r"},
			want: []string{"/r/usr/local/share/intake", "/r/etc/databroker"},
		},
		{
			name: "duplicates and empty INTAKE_PATH entries dropped",
			env:  Env{Home: "/h", VirtualEnv: "/p", CondaPrefix: "/p/", IntakePath: "::/h/.local/share/intake:/x/:/x"},
			want: []string{"/h/.local/share/intake", "/p/share/intake", "/usr/local/share/intake", "/x",
				"/h/.config/databroker", "/p/etc/databroker", "/etc/databroker"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SearchPath(tt.env); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SearchPath =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestEnvFromOS(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/xdg")
	t.Setenv("VIRTUAL_ENV", "/venv")
	t.Setenv("CONDA_PREFIX", "/conda")
	t.Setenv("INTAKE_PATH", "/a:/b")
	t.Setenv("HOME", "/home/someone")
	env := EnvFromOS()
	if env.Home != "/home/someone" || env.XDGDataHome != "/xdg" || env.VirtualEnv != "/venv" ||
		env.CondaPrefix != "/conda" || env.IntakePath != "/a:/b" || env.Root != "" || env.Getenv == nil {
		t.Errorf("EnvFromOS = %+v", env)
	}
}

func TestYAMLFiles(t *testing.T) {
	d := t.TempDir()
	for _, n := range []string{"b.yaml", "a.yml", ".hidden.yml", "notes.txt", "c.yml.bak"} {
		write(t, filepath.Join(d, n), "")
	}
	if err := os.Mkdir(filepath.Join(d, "dir.yml"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := yamlFiles(d)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(d, "a.yml"), filepath.Join(d, "b.yaml")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("yamlFiles = %q, want %q", got, want)
	}
	if got, err := yamlFiles(filepath.Join(d, "missing")); err != nil || got != nil {
		t.Errorf("missing dir: %q, %v", got, err)
	}
	if got, err := yamlFiles(filepath.Join(d, "a.yml")); err != nil || len(got) != 1 {
		t.Errorf("file entry: %q, %v", got, err)
	}
}
