package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Env is what the search path depends on: the environment variables intake and databroker
// read, passed in rather than read here so that tests and callers control them.
type Env struct {
	Home        string // $HOME
	XDGDataHome string // $XDG_DATA_HOME; empty or relative means ~/.local/share
	VirtualEnv  string // $VIRTUAL_ENV
	CondaPrefix string // $CONDA_PREFIX
	IntakePath  string // $INTAKE_PATH: directories or YAML files, colon separated
	// ExtraDirs are directories (or YAML files) searched before all others, e.g. given on
	// the command line.
	ExtraDirs []string
	// Root is prepended to the system directories /usr/local/share/intake and
	// /etc/databroker, so that tests need not write there; empty means "/".
	Root string
	// Getenv expands {{ env("NAME") }} templates in intake files; nil leaves them
	// unexpanded, with a warning.
	Getenv func(string) string
}

// EnvFromOS returns the environment of this process.
func EnvFromOS() Env {
	home, _ := os.UserHomeDir() // no home: the home directories are left out of the path
	return Env{
		Home:        home,
		XDGDataHome: os.Getenv("XDG_DATA_HOME"),
		VirtualEnv:  os.Getenv("VIRTUAL_ENV"),
		CondaPrefix: os.Getenv("CONDA_PREFIX"),
		IntakePath:  os.Getenv("INTAKE_PATH"),
		Getenv:      os.Getenv,
	}
}

// SearchPath returns the directories searched for configuration files, highest precedence
// first, without duplicates:
//
//  1. env.ExtraDirs;
//  2. the intake catalog directories: $XDG_DATA_HOME/intake (default ~/.local/share/intake),
//     $VIRTUAL_ENV/share/intake, $CONDA_PREFIX/share/intake, /usr/local/share/intake, then
//     the INTAKE_PATH entries;
//  3. the databroker 0.x config directories: ~/.config/databroker, $VIRTUAL_ENV/etc/databroker,
//     $CONDA_PREFIX/etc/databroker (databroker looks in <sys.prefix>/etc/databroker) and
//     /etc/databroker.
//
// An entry may also be a YAML file (INTAKE_PATH allows it).
func SearchPath(env Env) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(elem ...string) {
		for _, e := range elem {
			if e == "" {
				return // a missing variable: leave the entry out
			}
		}
		d := filepath.Clean(filepath.Join(elem...))
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range env.ExtraDirs {
		add(d)
	}
	if filepath.IsAbs(env.XDGDataHome) { // the XDG spec: a relative value is invalid
		add(env.XDGDataHome, "intake")
	} else {
		add(env.Home, ".local", "share", "intake")
	}
	add(env.VirtualEnv, "share", "intake")
	add(env.CondaPrefix, "share", "intake")
	add(rootOf(env), "usr", "local", "share", "intake")
	for _, d := range filepath.SplitList(env.IntakePath) {
		add(d)
	}
	add(env.Home, ".config", "databroker")
	add(env.VirtualEnv, "etc", "databroker")
	add(env.CondaPrefix, "etc", "databroker")
	add(rootOf(env), "etc", "databroker")
	return dirs
}

func rootOf(env Env) string {
	if env.Root == "" {
		return "/"
	}
	return env.Root
}

// yamlFiles lists the *.yml and *.yaml files of a search-path entry, sorted by name; an
// entry that is a file is itself. A missing entry has none; hidden files are left out, as
// intake's glob leaves them out.
func yamlFiles(entry string) ([]string, error) {
	fi, err := os.Stat(entry)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, searchError(entry, err)
	case !fi.IsDir():
		return []string{entry}, nil
	}
	ents, err := os.ReadDir(entry)
	if err != nil {
		return nil, searchError(entry, err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".yml") || strings.HasSuffix(n, ".yaml")) {
			continue
		}
		if e.IsDir() {
			continue
		}
		// A dangling link stays in: reading it fails with an error that names it.
		out = append(out, filepath.Join(entry, n))
	}
	sort.Strings(out)
	return out, nil
}

// searchError is a search-path entry that cannot be read (not one that is missing).
func searchError(entry string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is already in the FileError
	}
	return &FileError{File: entry, Err: fmt.Errorf("search: %w", err)}
}
