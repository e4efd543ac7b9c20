package main

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/brokerfs/brokerfs/catalog/transform"
)

// transformFlags are the flags of databroker's transforms, shared by mount and cache prefetch.
type transformFlags struct {
	funcs  []string // --transform KIND=package.module.function
	file   string   // --transform-file
	python string   // --python

	parsed map[string]string // kind -> import path, from funcs
	rules  *transform.Rules
}

func (f *transformFlags) register(fl *pflag.FlagSet) {
	fl.StringArrayVar(&f.funcs, "transform", nil, "KIND=package.module.function: show KIND documents (start, stop, descriptor, resource) as this Python function returns them, as databroker's transforms (repeatable)")
	fl.StringVar(&f.file, "transform-file", "", "YAML or JSON file of declarative transforms: per document kind, a list of {match: QUERY, patch: MERGE-PATCH}")
	fl.StringVar(&f.python, "python", "python3", "the Python interpreter that runs transform functions (--transform, a catalog configuration's transforms); PYTHONPATH is passed on")
}

// parse checks the flags before anything is opened.
func (f *transformFlags) parse() error {
	f.parsed = map[string]string{}
	for _, s := range f.funcs {
		kind, path, err := transform.ParseFlag(s)
		if err != nil {
			return usageError{err.Error()}
		}
		if old, dup := f.parsed[kind]; dup && old != path {
			return usageError{fmt.Sprintf("--transform %s: %s already has %s; give one function per kind", s, kind, old)}
		}
		f.parsed[kind] = path
	}
	if f.file != "" {
		r, err := transform.LoadRules(f.file)
		if err != nil {
			return usageError{fmt.Sprintf("--transform-file: %v", err)}
		}
		f.rules = r
	}
	return nil
}

// apply wraps src.cat in the transforms of the flags and of the source's configuration
// (a flag wins over the configuration for its kind). It starts the Python helper when a
// function is named, and fails when the helper cannot import one.
func (f *transformFlags) apply(ctx context.Context, src *source, log *slog.Logger) error {
	funcs := map[string]string{}
	for k, p := range src.transforms {
		if _, _, err := transform.ParseFlag(k + "=" + p); err != nil {
			return fmt.Errorf("catalog configuration: transforms.%s: %q is not an import path package.module.function", k, p)
		}
		funcs[k] = p
	}
	for k, p := range f.parsed {
		funcs[k] = p
	}
	var py *transform.Python
	if len(funcs) > 0 {
		var err error
		py, err = transform.StartPython(ctx, transform.PythonOptions{Python: f.python, Funcs: funcs, Logger: log})
		if err != nil {
			return fmt.Errorf("%w (the functions are imported by --python %s, with PYTHONPATH from the environment)", err, f.python)
		}
	}
	if py == nil && f.rules == nil {
		return nil
	}
	var desc []string
	for k, p := range funcs {
		desc = append(desc, k+"="+p)
	}
	sort.Strings(desc)
	if f.file != "" {
		desc = append(desc, "file="+f.file)
	}
	log.Info("documents are transformed; listing and --query use them as stored", "transforms", strings.Join(desc, " "))
	src.cat = transform.Wrap(src.cat, transform.Options{Python: py, Rules: f.rules, Logger: log})
	return nil
}
