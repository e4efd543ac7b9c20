package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Discover reads every configuration file in the search path (see SearchPath) and returns
// the sources brokerfs can read, in precedence order. A name defined twice keeps its first
// definition, which gets a warning naming the one it shadows.
//
// The errors are per file or per source, each a *FileError naming the file and, where
// known, the line: a file that fails to parse, a source with a missing argument. Those that
// wrap ErrSkipped are warnings (a source of another driver, a YAML file that is no catalog).
// None of them stops the discovery of other files and sources.
func Discover(env Env) ([]Source, []error) {
	var (
		srcs   []Source
		errs   []error
		byName = map[string]int{} // name -> index in srcs
		read   = map[string]bool{}
	)
	for _, entry := range SearchPath(env) {
		files, err := yamlFiles(entry)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			key, _ := filepath.Abs(f)
			if r, err := filepath.EvalSymlinks(key); err == nil {
				key = r
			}
			if read[key] {
				continue // the same file reached twice, e.g. through a link
			}
			read[key] = true
			got, ferrs := loadFile(f, env)
			errs = append(errs, ferrs...)
			for _, s := range got {
				if i, dup := byName[s.Name]; dup {
					srcs[i].warn(fmt.Sprintf("shadows the source %s in %s, which comes later in the search path", s.Name, location(s.File, s.Line)))
					continue
				}
				byName[s.Name] = len(srcs)
				srcs = append(srcs, s)
			}
		}
	}
	return srcs, errs
}

// NotFoundError is Find's error: no source has the name.
type NotFoundError struct {
	Name      string
	Available []string // the names found, in precedence order
	Searched  []string // the search path
	// Problems are the discovery errors about a source of this name (e.g. its driver is
	// not one brokerfs reads), or else all discovery errors that are not warnings: one of
	// them may be why the name is missing.
	Problems []error
}

func (e *NotFoundError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "catalog %q not found", e.Name)
	avail := "none"
	if len(e.Available) > 0 {
		avail = strings.Join(e.Available, ", ")
	}
	fmt.Fprintf(&b, " (available: %s; searched: %s)", avail, strings.Join(e.Searched, ", "))
	for _, p := range e.Problems {
		b.WriteString("; " + p.Error())
	}
	return b.String()
}

func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// Find returns the source with the given name (see Discover). When there is none, the
// error is a *NotFoundError (errors.Is ErrNotFound) that lists the names available, the
// directories searched and any problem found with a source of that name.
func Find(env Env, name string) (*Source, error) {
	srcs, errs := Discover(env)
	for i := range srcs {
		if srcs[i].Name == name {
			return &srcs[i], nil
		}
	}
	nf := &NotFoundError{Name: name, Searched: SearchPath(env)}
	for _, s := range srcs {
		nf.Available = append(nf.Available, s.Name)
	}
	var about, others []error
	for _, err := range errs {
		var fe *FileError
		switch {
		case errors.As(err, &fe) && fe.Source == name:
			about = append(about, err)
		case !errors.Is(err, ErrSkipped):
			others = append(others, err)
		}
	}
	nf.Problems = about
	if len(about) == 0 {
		nf.Problems = others
	}
	return nil, nf
}

// LoadPack reads the catalog.yml of a databroker-pack directory and returns its first
// source, with paths and root_map values resolved against dir: a pack mounts wherever it
// was copied. (databroker-pack writes the absolute paths of the machine that packed it in
// args.paths, and the paths that travel with the directory in metadata.relative_paths.)
func LoadPack(dir string) (*Source, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("load pack %s: %w", dir, err)
	}
	file := filepath.Join(abs, "catalog.yml")
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("load pack %s: no catalog.yml: not a databroker-pack directory", dir)
		}
		return nil, fmt.Errorf("load pack %s: %w", dir, err)
	}
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, err
	}
	if root == nil || lookup(root, "sources") == nil {
		return nil, &FileError{File: file, Err: errors.New("no sources: not a databroker-pack catalog")}
	}
	entries, err := intakeEntries(file, lookup(root, "sources"))
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, &FileError{File: file, Err: errors.New("sources is empty")}
	}
	src, err := intakeSource(file, entries[0], Env{})
	if err != nil {
		return nil, err
	}
	if len(entries) > 1 {
		src.warn(fmt.Sprintf("%s holds %d sources; brokerfs mounts the first, %s", file, len(entries), src.Name))
	}
	return &src, nil
}

// loadFile reads one configuration file: an intake catalog (top-level "sources") or a
// databroker 0.x config (top-level "metadatastore").
func loadFile(path string, env Env) ([]Source, []error) {
	file, err := filepath.Abs(path)
	if err != nil {
		return nil, []error{&FileError{File: path, Err: err}}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the FileError
		}
		return nil, []error{&FileError{File: file, Err: fmt.Errorf("read: %w", err)}}
	}
	return loadBytes(file, data, env)
}

// loadBytes is loadFile on the file's content; file is absolute.
func loadBytes(file string, data []byte, env Env) ([]Source, []error) {
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, []error{err}
	}
	switch {
	case root == nil:
		return nil, []error{&FileError{File: file, Err: fmt.Errorf("empty file: %w", ErrSkipped)}}
	case root.Kind != yaml.MappingNode:
		return nil, []error{&FileError{File: file, Line: root.Line, Err: errors.New("want a mapping at the top level (sources: for an intake catalog, metadatastore: for a databroker 0.x config)")}}
	case lookup(root, "sources") != nil:
		entries, err := intakeEntries(file, lookup(root, "sources"))
		if err != nil {
			return nil, []error{err}
		}
		var (
			srcs []Source
			errs []error
		)
		for _, e := range entries {
			s, err := intakeSource(file, e, env)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			srcs = append(srcs, s)
		}
		return srcs, errs
	case lookup(root, "metadatastore") != nil:
		s, err := v0Source(file, root)
		if err != nil {
			return nil, []error{err}
		}
		return []Source{s}, nil
	}
	return nil, []error{&FileError{File: file, Line: root.Line, Err: fmt.Errorf("neither an intake catalog (no sources:) nor a databroker 0.x config (no metadatastore:): %w", ErrSkipped)}}
}

// warn adds a warning, URIs redacted.
func (s *Source) warn(w string) { s.Warnings = append(s.Warnings, RedactText(w)) }

func location(file string, line int) string {
	if line > 0 {
		return file + ":" + strconv.Itoa(line)
	}
	return file
}

// parseYAML parses the first YAML document of data; an empty document gives nil.
func parseYAML(file string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		fe := yamlError(file, "", err)
		if l := problemLine(data, err.Error()); l > fe.Line && fe.Line > 0 {
			fe.Err = fmt.Errorf("%w (in the block that starts at line %d)", fe.Err, fe.Line)
			fe.Line = l
		}
		return nil, fe
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return deref(doc.Content[0]), nil
}

// problemLine returns the line of a syntax error. yaml.v3 reports the line where the
// enclosing block starts (often line 1), not the line at fault; the first prefix of the file
// that fails with the same message ends at the line at fault. 0 means not found.
func problemLine(data []byte, msg string) int {
	if bytes.Count(data, []byte("\n")) > maxProblemLines {
		return 0 // quadratic: not worth it beyond the size of a configuration file
	}
	var prefix []byte
	for i, l := range bytes.SplitAfter(data, []byte("\n")) {
		prefix = append(prefix, l...)
		var n yaml.Node
		if err := yaml.Unmarshal(prefix, &n); err != nil && err.Error() == msg {
			return i + 1
		}
	}
	return 0
}

const maxProblemLines = 2000

var (
	yamlSyntax = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlType   = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// yamlError turns a yaml.v3 error into a *FileError at the line it names.
func yamlError(file, source string, err error) *FileError {
	fe := &FileError{File: file, Source: source}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var msgs []string
		for i, m := range te.Errors {
			// The first message's line becomes the error's; later ones keep theirs.
			if sm := yamlType.FindStringSubmatch(m); sm != nil && i == 0 {
				fe.Line, _ = strconv.Atoi(sm[1])
				m = sm[2]
			}
			msgs = append(msgs, m)
		}
		fe.Err = errors.New(strings.Join(msgs, "; "))
		return fe
	}
	msg := err.Error()
	if sm := yamlSyntax.FindStringSubmatch(msg); sm != nil {
		fe.Line, _ = strconv.Atoi(sm[1])
		msg = sm[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	fe.Err = fmt.Errorf("parse yaml: %s", msg)
	return fe
}

// typeError is how a custom unmarshaler reports a bad value: yaml.v3 collects TypeErrors
// and goes on decoding, and yamlError turns the line into the FileError's.
func typeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
}

// deref follows an alias to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// lookup returns the value of key in a mapping node, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return deref(m.Content[i+1])
		}
	}
	return nil
}

// keyLine returns the line of key in a mapping node, or the mapping's own line.
func keyLine(m *yaml.Node, key string) int {
	m = deref(m)
	for i := 0; m != nil && i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i].Line
		}
	}
	if m == nil {
		return 0
	}
	return m.Line
}
